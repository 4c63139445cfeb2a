"""Backbones: one module per model, all behind `Backbone`."""

from mrdib_tf.backbones.base import Backbone
from mrdib_tf.backbones.dualgnn import DualGNN
from mrdib_tf.backbones.freedom import FREEDOM
from mrdib_tf.backbones.lightgcn import LightGCN
from mrdib_tf.backbones.mgcn import MGCN
from mrdib_tf.backbones.mmgcn import MMGCN
from mrdib_tf.backbones.soil import SOIL
from mrdib_tf.backbones.vbpr import VBPR

__all__ = ["Backbone", "DualGNN", "FREEDOM", "LightGCN", "MGCN", "MMGCN", "SOIL", "VBPR"]
