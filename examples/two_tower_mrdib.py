"""MRdIB as a drop-in Keras layer inside a recommender of your own: a two-tower model.

The project ships VBPR, LightGCN and MGCN; this script writes a different recommender from scratch
(a plain `keras.Model`) and adds MRdIB to it with one layer call. Per modality, an item tower (a small
MLP) reads that modality's frozen feature matrix and gives h_m; `MRdIBRegularizer` turns the h_m into
codes z_m (and adds its KL, redundancy and unique-information losses with `add_loss`); an item's
embedding is the sum of its codes plus an item ID embedding, a user's is an ID embedding, and the
score is their dot product. Training is `compile` + `fit` on BPR triples, with full-ranking validation
every epoch, early stopping on validation Recall@20 and the best epoch's weights restored and tested.

Run it from the project root:

    python examples/two_tower_mrdib.py                  # tiktok, shipped in data/tiktok
    python examples/two_tower_mrdib.py --data-dir PATH  # any folder in MMRec layout

Flags: --dataset, --data-dir, --epochs (50), --patience (5), --seed (0), --batch-size (512).
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from data_pipeline import load_dataset
from mrdib_tf import FullRankingEvaluator, FullRankingValidation, MRdIBRegularizer
from mrdib_tf.losses import bpr_loss

BATCH_SIZE = 512
DIM = 64


class TwoTowerMRdIB(keras.Model):
    """User ID tower; item = sum over modalities of MRdIB(MLP_m(features_m)) + item ID embedding.

    `call(batch, training=True)` returns the batch's (positive, negative) scores; `call()` returns
    `(user_embeddings, item_embeddings)` of everyone, which is what `FullRankingValidation` ranks.
    """

    def __init__(self, n_users: int, features: dict[str, np.ndarray], seed: int, name="two_tower", **kwargs):
        super().__init__(name=name, **kwargs)
        self.modalities = sorted(features)
        n_items = next(iter(features.values())).shape[0]
        self.user_embedding = keras.layers.Embedding(n_users, DIM, name="user_embedding")
        self.item_embedding = keras.layers.Embedding(n_items, DIM, name="item_embedding")
        self.user_embedding.build()  # call() reads the whole table, not just looked-up rows
        self.item_embedding.build()
        # The features are frozen: non-trainable weights, standardised per column.
        self.features = {
            m: self.add_weight(name=f"{m}_features", shape=features[m].shape, trainable=False,
                               initializer=keras.initializers.Constant(_standardised(features[m])))
            for m in self.modalities
        }
        self.towers = {
            m: keras.Sequential([keras.layers.Dense(DIM, activation="elu"), keras.layers.Dense(DIM)],
                                name=f"{m}_tower")
            for m in self.modalities
        }
        self.mrdib = MRdIBRegularizer(self.modalities, n_users=n_users, seed=seed)
        self.bpr_tracker = keras.metrics.Mean(name="bpr")  # logged next to "loss" and MRdIB's terms

    def build(self, input_shape=None):
        """Creates every variable, MRdIB's included (sized by the h_m), with one inference pass."""
        self.call()

    def item_representations(self, items=None) -> dict[str, tf.Tensor]:
        """h_m for the given item ids (None: the whole catalogue)."""
        rows = {m: table if items is None else tf.gather(table, items) for m, table in self.features.items()}
        return {m: self.towers[m](rows[m]) for m in self.modalities}

    def item_vectors(self, codes: dict[str, tf.Tensor], items=None) -> tf.Tensor:
        ids = self.item_embedding.embeddings if items is None else self.item_embedding(items)
        return tf.add_n([codes[m] for m in self.modalities]) + ids

    def call(self, batch=None, training=False):
        if batch is None or not training:  # inference: MRdIB returns its posterior means
            codes = self.mrdib(self.item_representations())
            return self.user_embedding.embeddings, self.item_vectors(codes)
        # Training: encode only the batch's rows, positives first, then negatives.
        items = tf.concat([batch["pos_item"], batch["neg_item"]], axis=0)
        b = tf.shape(batch["pos_item"])[0]
        codes = self.mrdib(self.item_representations(items), users=batch["user"], pos_rows=tf.range(b),
                           neg_rows=tf.range(b, 2 * b), pos_items=batch["pos_item"], training=True)
        vectors = self.item_vectors(codes, items)
        users = self.user_embedding(batch["user"])
        return tf.reduce_sum(users * vectors[:b], -1), tf.reduce_sum(users * vectors[b:], -1)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        positive, negative = y_pred
        bpr = bpr_loss(positive, negative)
        self.bpr_tracker.update_state(bpr)
        return bpr + sum(self.losses)  # self.losses: what MRdIB added


def _standardised(matrix: np.ndarray) -> np.ndarray:
    return (matrix - matrix.mean(0)) / (matrix.std(0) + 1e-6)


class EpochLine(keras.callbacks.Callback):
    """One line per epoch: the training terms (MRdIB's included) and validation Recall@20."""

    def on_epoch_end(self, epoch, logs=None):
        terms = " ".join(f"{k}={logs[k]:.4f}" for k in ("loss", "bpr", "kl", "mi_estimate", "unique") if k in logs)
        print(f"epoch {epoch + 1:3d}  {terms}  val_recall@20={logs['val_recall@20']:.4f}", flush=True)


def train(dataset, epochs: int = 50, patience: int = 5, seed: int = 0, batch_size: int = BATCH_SIZE,
          verbose: bool = True):
    """Trains the two-tower model with MRdIB on `dataset` to early stopping on validation Recall@20.

    Returns the model at its best epoch, its test metrics and the Keras `History`.
    """
    keras.utils.set_random_seed(seed)
    model = TwoTowerMRdIB(dataset.n_users, dataset.features, seed=seed)
    model.build()  # every variable exists before fit traces the train step
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)

    validation = FullRankingValidation(FullRankingEvaluator(dataset.train, dataset.valid))
    stopping = keras.callbacks.EarlyStopping("val_recall@20", mode="max", patience=patience,
                                             restore_best_weights=True)
    start = time.perf_counter()
    # train_epochs is one endless, already shuffled stream: fit takes steps_per_epoch batches per epoch.
    history = model.fit(dataset.train_epochs(batch_size, seed), steps_per_epoch=dataset.steps_per_epoch(batch_size),
                        epochs=epochs, callbacks=[validation, *([EpochLine()] if verbose else []), stopping],
                        verbose=0, shuffle=False)
    seconds = time.perf_counter() - start

    # EarlyStopping has restored the best epoch's weights: test those.
    test = validation.evaluate(FullRankingEvaluator(dataset.train, dataset.test))
    if verbose:
        print(f"best epoch {stopping.best_epoch + 1} (val_recall@20={stopping.best:.4f}), "
              f"trained in {seconds:.1f}s (validation included)")
        print("test " + "  ".join(f"{k}={test[k]:.4f}" for k in ("recall@10", "recall@20", "ndcg@10", "ndcg@20")))
    return model, test, history


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Loads the dataset named on the command line, trains on it and returns the test metrics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=None, help="a shipped dataset name (default: tiktok)")
    parser.add_argument("--data-dir", default=None, help="a dataset folder in MMRec layout")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    args = parser.parse_args(argv)

    dataset = load_dataset(args.dataset, args.data_dir)
    print(f"{dataset.name}: {dataset.n_users} users, {dataset.n_items} items, "
          f"{dataset.train.nnz} train pairs, modalities {sorted(dataset.features)}")
    return train(dataset, args.epochs, args.patience, args.seed, args.batch_size)[1]


if __name__ == "__main__":
    main()
