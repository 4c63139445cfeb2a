"""Mixed precision: the dense layers' matmuls in float16, everything else in float32.

Under Keras' `mixed_float16` policy (`--mixed-precision`, for GPUs), `Dense` computes in float16 from
float32 weights and hands its result on in float32, while the layers that hold the rest of a model (the
backbones, MRdIB's layers, `Recommender`) are float32 layers. So the matmuls over high-dimensional
features, where a GPU's tensor cores pay, run in half precision, and what sums many terms (graph
propagation, BPR over a batch, the KL, InfoNCE's log-sum-exp, full ranking) keeps float32's digits.
Outside that policy both are plain float32 layers.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

#: The dtype of every variable and of everything outside the dense layers' matmuls.
FULL_PRECISION = "float32"
#: Keras' policy `--mixed-precision` sets.
MIXED_POLICY = "mixed_float16"


class Dense(keras.layers.Dense):
    """`keras.layers.Dense` whose output is float32 whatever its compute dtype."""

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        return tf.cast(super().call(inputs, training=training), FULL_PRECISION)


def full_precision(layer_kwargs: dict[str, Any]) -> dict[str, Any]:
    """A container layer's keyword arguments with float32 as its dtype unless one is given."""
    return {"dtype": FULL_PRECISION, **layer_kwargs}
