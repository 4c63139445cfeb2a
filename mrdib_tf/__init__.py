"""mrdib-tf: MRdIB as a plug-and-play training regularizer for multimodal recommenders (Keras 3).

The library: `MRdIBRegularizer` (a Keras layer to put in your own model), the backbones it wraps, the
full-ranking evaluator and validation callback, and the TF Serving export. Experiment tooling (run
configuration, training runs, tuning, ablation, reports) lives in `mrdib_tf.experiments`.
"""

from mrdib_tf.backbones import MGCN, VBPR, Backbone, LightGCN
from mrdib_tf.bottleneck import ModalityBottleneck
from mrdib_tf.callbacks import FullRankingValidation, NonFiniteLossGuard
from mrdib_tf.heads import PreferenceHead
from mrdib_tf.metrics import FullRankingEvaluator, evaluate_scores
from mrdib_tf.mine import Critic, mutual_information
from mrdib_tf.recommender import Recommender
from mrdib_tf.regularizer import MRdIBRegularizer

__all__ = [
    "Backbone",
    "Critic",
    "FullRankingEvaluator",
    "FullRankingValidation",
    "LightGCN",
    "MGCN",
    "MRdIBRegularizer",
    "ModalityBottleneck",
    "NonFiniteLossGuard",
    "PreferenceHead",
    "Recommender",
    "VBPR",
    "evaluate_scores",
    "mutual_information",
]
