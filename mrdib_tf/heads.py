"""MRdIB's prediction heads: rank items for a user from codes alone, against a user table of their own."""

from __future__ import annotations

import keras
import tensorflow as tf

from mrdib_tf.precision import Dense, full_precision


@keras.saving.register_keras_serializable(package="mrdib_tf")
class PreferenceHead(keras.layers.Layer):
    """Scores <p_u, g(z_i)> for BPR triples, with p a user table of the head's own.

    MRdIB's unique decoders (g = identity on one modality's code) and its fusion head (g a one-hidden-layer
    ELU MLP on the concatenated codes, so it can use what only the modalities together tell). The user
    side is trained only by this head's loss: it carries no other head's or modality's information and
    sends no gradient into the backbone. No item bias: it would cancel in BPR.

    Args:
        n_users: rows of the user table.
        hidden_units: width of g's hidden layer and output; None for g = identity.
        seed: initialiser seed (seed .. seed + 2); None draws from Keras' global seed.
    """

    def __init__(self, n_users: int, hidden_units: int | None = None, seed: int | None = None, **kwargs) -> None:
        super().__init__(**full_precision(kwargs))
        self.n_users = n_users
        self.hidden_units = hidden_units
        self.seed = seed
        self.transform = (
            [
                Dense(hidden_units, "elu", kernel_initializer=self._initializer(1), name="hidden"),
                Dense(hidden_units, kernel_initializer=self._initializer(2), name="output"),
            ]
            if hidden_units
            else []
        )

    def _initializer(self, index: int) -> keras.initializers.Initializer:
        return keras.initializers.GlorotUniform(None if self.seed is None else self.seed + index)

    def build(self, codes_shape: tuple) -> None:
        width = codes_shape[-1]
        for layer in self.transform:
            layer.build((None, width))
            width = layer.units
        self.users = self.add_weight(shape=(self.n_users, width), initializer=self._initializer(0), name="users")

    def call(self, users: tf.Tensor, pos_codes: tf.Tensor, neg_codes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(<p_u, g(pos)>, <p_u, g(neg)>) for every row of the triple."""
        preferences = tf.gather(self.users, users)
        scores = []
        for codes in (pos_codes, neg_codes):
            for layer in self.transform:
                codes = layer(codes)
            scores.append(tf.reduce_sum(preferences * codes, axis=-1))
        return scores[0], scores[1]

    def get_config(self) -> dict:
        return {**super().get_config(), "n_users": self.n_users, "hidden_units": self.hidden_units, "seed": self.seed}
