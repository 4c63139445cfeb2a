"""Every run setting in one place: the trainer, the tuner, the ablation and the CLI all read `RunConfig`."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_pipeline.registry import DEFAULT_DATASET
from mrdib_tf.experiments.distribution import STRATEGIES
from mrdib_tf.bottleneck_forms import CONTROL_FORMS, FORMS
from mrdib_tf.mine import CRITIC_LEARNING_RATE
from mrdib_tf.regularizer import CRITIC_ROWS


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


#: Model settings whose default depends on the backbone: the values chosen on tiktok's validation split
#: (docs/RESULTS.md, "Defaults", says how). A setting left unset (None) takes its backbone's value here,
#: else `COMMON_DEFAULTS`'. The alphas are `trainers.tune`'s best trials at seed 999 (each entry says which),
#: kept to the digit so that the default command reproduces them.
BACKBONE_DEFAULTS: dict[str, dict[str, Any]] = {
    # bare VBPR's best reg_weight in the December 8 grid 0.03-10 (3; the earlier grid 0.1-1.0 stopped below
    # it), and the tune's best trial at the earlier 0.3 (trial 4 of 8, December 6): not re-tuned at 3
    "vbpr": {"reg_weight": 3.0, "alpha_kl": 0.002529233441681338, "alpha_mi": 0.00030643187072396485,
             "alpha_unique": 0.006471778654612618},
    # MMRec's lr decay; the tune's trial 2 of 5 with the dense encoder, kept since the diagonal one tied it
    "mgcn": {"lr_decay": 0.96, "placement": "features", "alpha_kl": 0.002546971728831641,
             "alpha_mi": 0.0021994271261692893, "alpha_unique": 0.0013696307242337601},
    "lightgcn": {},
    # bare FREEDOM's best reg_weight (the grid's edge), and the tune's best trial at it (trial 4 of 5 at 28179dd)
    "freedom": {"reg_weight": 1e-2, "alpha_kl": 0.0010934666049252147, "alpha_mi": 0.0008884092290049504,
                "alpha_unique": 0.0010113987089033034},
    # bare DualGNN's best reg_weight (the grid's edge), and the tune's best trial at it (trial 4 of 6), both
    # searched on December 6 with the starting weights commit 13fa0f7 mended
    "dualgnn": {"reg_weight": 1e-1, "alpha_kl": 0.01448193304216141, "alpha_mi": 0.01812099928740215,
                "alpha_unique": 0.021164330630306625},
    # the authors' SOIL.yaml: the decay of MGCN's; their loss reads no reg_weight; their features load frozen.
    # cl_weight: bare SOIL's best on validation; the alphas: the tune's best trial at it (trial 2 of 5 at
    # commit 28179dd, the same point as MGCN's: the seed-999 search draws the same early trials)
    "soil": {"lr_decay": 0.96, "reg_weight": 0.0, "fine_tune_features": False, "cl_weight": 0.001,
             "alpha_kl": 0.002546971728831641, "alpha_mi": 0.0021994271261692893,
             "alpha_unique": 0.0013696307242337601},
    # MMRec's MMGCN runs three layers whatever its config says (backbones/mmgcn.py); the alphas: the tune's
    # best trial at MMRec's settings (trial 2 of 4, December 6, with the mended starting weights) without
    # its redundancy term (alpha_mi 0.0021994271261692893), the variant of its ablation with the highest
    # validation Recall@20 over seeds 1000-1004
    "mmgcn": {"n_layers": 3, "alpha_kl": 0.002546971728831641, "alpha_mi": 0.0,
              "alpha_unique": 0.0013696307242337601},
}
#: MMRec's defaults for the backbones' own settings, and the MRdIB paper's best weights for MGCN (for a
#: backbone without validated ones of its own, such as one a user plugs in).
COMMON_DEFAULTS: dict[str, Any] = {
    "lr_decay": 1.0,
    "reg_weight": 1e-4,
    "n_layers": 2,
    "cl_weight": 0.01,
    "user_item_cl_weight": 0.01,
    "fine_tune_features": True,
    "alpha_kl": 0.005,
    "alpha_mi": 0.05,
    "alpha_unique": 0.005,
    "codes_on_main_path": True,
    "initial_sigma": 0.1,
    "prior_scale": "codes",
    "encoder": "diagonal",
    "bottleneck": "matched",
    "placement": "views",
}
#: SOIL's (knn_i, knn_a) by dataset, from its authors' dataset configs; baby's for any other dataset.
SOIL_GRAPH_DEFAULTS: dict[str, tuple[int, int]] = {"baby": (10, 2), "sports": (5, 6), "clothing": (5, 3)}
_BY_BACKBONE = " (default: the backbone's validated value)"
#: The smallest value each numeric setting accepts, and whether it must exceed it (True) or may equal it.
_LOWER_BOUNDS: dict[str, tuple[float, bool]] = {
    "embedding_dim": (1, False), "n_layers": (0, False), "epochs": (1, False), "patience": (0, False),
    "batch_size": (1, False), "steps_per_execution": (1, False), "eval_batch_users": (1, False),
    "cpu_devices": (1, False), "critic_rows": (2, False),
    "lr": (0.0, True), "lr_decay": (0.0, True), "lr_decay_epochs": (0.0, True), "critic_lr": (0.0, True), "initial_sigma": (0.0, True),
    "dropout_rate": (0.0, True), "rate_step": (0.0, True),
    "reg_weight": (0.0, False), "cl_weight": (0.0, False), "user_item_cl_weight": (0.0, False),
    "interest_k": (1, False), "second_order_k": (0, False), "edge_dropout": (0.0, False),
    "alpha_kl": (0.0, False), "alpha_mi": (0.0, False), "alpha_unique": (0.0, False),
}


@dataclass
class RunConfig:
    """A training run: data, backbone, MRdIB weights, optimisation and evaluation.

    Defaults are MMRec's protocol (batch 2048, Adam 1e-3 with PyTorch's epsilon, 64-d, early stopping on
    validation Recall@20 with patience 20). The model settings left None take their backbone's validated
    value (`BACKBONE_DEFAULTS`) when the config is made, so `config.json` always records what ran;
    `replace(backbone=...)` keeps the settings already filled in.
    """

    dataset: str = _setting(DEFAULT_DATASET, "dataset name: data/NAME/ or $MRDIB_DATA_DIR/NAME/")
    data_dir: str | None = _setting(None, "an MMRec-layout folder to use instead of --dataset")
    backbone: str = _setting("vbpr", "backbone model")
    embedding_dim: int = _setting(64, "embedding size d")
    reg_weight: float | None = _setting(
        None, "weight of the backbone's own regularizer (MMRec's reg_weight; FREEDOM: of its per-modality BPR terms)"
        + _BY_BACKBONE
    )
    n_layers: int | None = _setting(
        None, "propagation layers of graph backbones (MGCN, FREEDOM: of their user-item graph)" + _BY_BACKBONE
    )
    cl_weight: float | None = _setting(
        None, "weight of MGCN's and SOIL's side/content contrastive loss (cl_loss; grid 0.001, 0.01, 0.1)"
        + _BY_BACKBONE
    )
    user_item_cl_weight: float | None = _setting(
        None, "weight of SOIL's user/item contrastive loss (its cl_loss2; grid 0.001, 0.01, 0.1)" + _BY_BACKBONE
    )
    interest_k: int | None = _setting(
        None, "SOIL's interest items per user and modality (its knn_i; default by dataset as its authors "
        "set it: baby 10, sports 5, clothing 5, others 10)"
    )
    second_order_k: int | None = _setting(
        None, "SOIL's second-order items per user beyond its own (its knn_a; default by dataset: baby 2, "
        "sports 6, clothing 3, others 2)"
    )
    edge_dropout: float = _setting(
        0.8, "share of training pairs FREEDOM drops from its user-item graph each epoch (MMRec's dropout; grid 0.8, 0.9)"
    )
    fine_tune_features: bool | None = _setting(
        None, "fine-tune the raw feature tables, as MMRec's MGCN and FREEDOM do (--no-fine-tune-features: keep "
        "them, as SOIL's authors do)" + _BY_BACKBONE
    )
    mrdib: bool = _setting(True, "wrap the backbone with MRdIBRegularizer (--no-mrdib: bare backbone)")
    alpha_kl: float | None = _setting(
        None, "MRdIB weight of the KL (bottleneck) term" + _BY_BACKBONE
    )
    alpha_mi: float | None = _setting(
        None, "MRdIB weight of the redundancy (mutual information) term" + _BY_BACKBONE
    )
    alpha_unique: float | None = _setting(
        None, "MRdIB weight of the unique (per-modality prediction) term" + _BY_BACKBONE
    )
    codes_on_main_path: bool | None = _setting(
        None,
        "the backbone consumes MRdIB's sampled codes z (--no-codes-on-main-path: it keeps h, and z feeds only "
        "MRdIB's terms)" + _BY_BACKBONE,
    )
    initial_sigma: float | None = _setting(
        None, "MRdIB's initial noise scale, in units of each code dimension's spread" + _BY_BACKBONE
    )
    prior_scale: str | None = _setting(
        None,
        "MRdIB's prior is matched to the spread of the 'codes' (prices noise only) or of the 'inputs' h" + _BY_BACKBONE,
    )
    encoder: str | None = _setting(
        None, "MRdIB's maps from h to the posterior's mean and scale: per 'diagonal' dimension or 'dense' d x d"
        + _BY_BACKBONE,
    )
    bottleneck: str | None = _setting(
        None, "MRdIB's bottleneck form: 'matched' (prior matched to the batch's spread), 'paper' (prior N(0, I) on "
        "standardised inputs), 'dvib' (DVIB's per-item noise, prior N(0, 0.5^2)), or a control without a KL: "
        "'noise' (fixed Gaussian noise at --initial-sigma) or 'dropout' (at --dropout-rate)" + _BY_BACKBONE,
    )
    dropout_rate: float = _setting(0.1, "the 'dropout' control's rate")
    target_rate: float | None = _setting(
        None, "nats per item and code dimension each modality's bottleneck holds, its KL weight set by dual "
        "ascent from --alpha-kl (default: off, the KL weighed by --alpha-kl)"
    )
    rate_step: float = _setting(0.01, "step size of the dual ascent on the KL weight under --target-rate")
    placement: str | None = _setting(
        None,
        "where MGCN exposes h_m to MRdIB: 'views' (propagated item views) or 'features' (projected features); "
        "VBPR: 'raw' puts MRdIB on the raw feature columns, before its projection (otherwise on its projections)"
        + _BY_BACKBONE,
    )
    critic_lr: float = _setting(CRITIC_LEARNING_RATE, "Adam learning rate of MRdIB's mutual-information critics")
    critic_rows: int = _setting(CRITIC_ROWS, "the most positives of a batch MRdIB's critics score (evenly spread)")
    fusion_head: bool = _setting(
        False, "add a separate MRdIB synergy head (the backbone's loss is the synergy term otherwise)"
    )
    epochs: int = _setting(1000, "maximum number of epochs")
    patience: int = _setting(20, "stop after this many epochs without a better validation metric")
    valid_metric: str = _setting("recall@20", "validation metric for early stopping and model choice")
    batch_size: int = _setting(2048, "training batch size")
    lr: float = _setting(1e-3, "Adam learning rate")
    lr_decay: float | None = _setting(
        None, "the learning rate of epoch e (from 0) is lr x lr_decay^(e / lr_decay_epochs), MMRec's "
        "learning_rate_scheduler (MGCN: 0.96; others 1, no decay)" + _BY_BACKBONE
    )
    lr_decay_epochs: float = _setting(50.0, "epochs over which the learning rate is multiplied by lr_decay")
    negative_pool: str = _setting(
        "all", "items negatives are drawn from: 'all' (the catalogue) or 'train' (items seen in training, as MMRec)"
    )
    seed: int = _setting(999, "random seed (data order, negatives, initialisation, sampling)")
    steps_per_execution: int = _setting(
        16, "most training steps per compiled call; the largest divisor of an epoch's steps up to this is used, "
        "so every epoch trains exactly its own batches (1: one step per call)"
    )
    jit_compile: bool = _setting(True, "compile training steps with XLA (--no-jit-compile to turn off)")
    eval_batch_users: int = _setting(4096, "users scored at once during full-ranking evaluation")
    strategy: str = _setting(
        "default", "tf.distribute strategy: 'default' (one device), 'mirrored' (every local GPU, else "
        "--cpu-devices logical CPU devices) or 'multi-worker' (the workers TF_CONFIG lists)"
    )
    cpu_devices: int = _setting(2, "logical CPU devices --strategy mirrored trains on when there is no GPU")
    mixed_precision: bool = _setting(
        False, "for GPUs: the dense layers' matmuls in float16 (Keras' mixed_float16, with loss scaling), "
        "everything else in float32"
    )
    run_dir: str | None = _setting(None, "output folder (default runs/<dataset>-<backbone>-<time>)")

    def __post_init__(self) -> None:
        for name, value in {**COMMON_DEFAULTS, **BACKBONE_DEFAULTS.get(self.backbone, {})}.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        interest_k, second_order_k = SOIL_GRAPH_DEFAULTS.get(self.dataset_name, SOIL_GRAPH_DEFAULTS["baby"])
        self.interest_k = interest_k if self.interest_k is None else self.interest_k
        self.second_order_k = second_order_k if self.second_order_k is None else self.second_order_k
        if self.strategy not in STRATEGIES:
            raise ValueError(f"`strategy` must be one of {', '.join(STRATEGIES)}; got {self.strategy!r}.")
        for name, (bound, strict) in _LOWER_BOUNDS.items():
            value = getattr(self, name)
            if not (value > bound if strict else value >= bound):  # also refuses NaN
                raise ValueError(f"`{name}` must be {'>' if strict else '>='} {bound:g}, got {value}.")
        self._check_bottleneck()

    def _check_bottleneck(self) -> None:
        """The bottleneck settings the layer would refuse, refused here with the flag named, before a run starts."""
        if self.bottleneck not in FORMS:
            raise ValueError(f"`bottleneck` must be one of {', '.join(FORMS)}; got {self.bottleneck!r}.")
        if not self.dropout_rate < 1:
            raise ValueError(f"`dropout_rate` must be < 1, got {self.dropout_rate}.")
        if self.target_rate is not None:
            if not 0 < self.target_rate < float("inf"):
                raise ValueError(f"`target_rate` must be a finite number > 0 (nats per dimension), got {self.target_rate}.")
            if self.bottleneck in CONTROL_FORMS:
                raise ValueError(f"`target_rate` needs a bottleneck with a KL; `bottleneck={self.bottleneck}` has none.")

    @property
    def dataset_name(self) -> str:
        """The dataset's display name: the folder name under --data-dir, else --dataset."""
        return Path(self.data_dir).name if self.data_dir else self.dataset

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json_file(cls, path: str | Path) -> "RunConfig":
        """Reads a `config.json` written by a run; unknown keys are an error, not silently dropped."""
        values = json.loads(Path(path).read_text(encoding="utf-8"))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {unknown}; expected some of {sorted(known)}.")
        return cls(**values)

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)


def setting_differences(a: RunConfig, b: RunConfig, ignore: Sequence[str] = ()) -> dict[str, tuple[Any, Any]]:
    """Setting name -> (value in a, value in b), for every setting that differs."""
    left, right = dataclasses.asdict(a), dataclasses.asdict(b)
    return {k: (left[k], right[k]) for k in left if k not in ignore and left[k] != right[k]}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds one command-line flag per `RunConfig` field (`--batch-size`, `--no-mrdib`, ...)."""
    for setting in dataclasses.fields(RunConfig):
        flag = "--" + setting.name.replace("_", "-")
        help_text = setting.metadata["help"]
        kind = setting.type.split(" | ")[0]
        if kind == "bool":
            parser.add_argument(
                flag, dest=setting.name, action=argparse.BooleanOptionalAction, default=setting.default,
                help=help_text,
            )
        else:
            shown = "" if setting.name in COMMON_DEFAULTS else f" (default: {setting.default})"
            parser.add_argument(flag, dest=setting.name, type={"int": int, "float": float}.get(kind, str),
                                default=setting.default, help=help_text + shown)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The `RunConfig` named by parsed flags (other attributes of `args` are ignored)."""
    names = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in vars(args).items() if k in names})
