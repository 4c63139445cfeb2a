"""PyTorch's defaults that MMRec's backbones rely on, as Keras initializers and constants, so that a
backbone ported from MMRec starts where MMRec's does and computes what it computes."""

from __future__ import annotations

import math

import keras

from mrdib_tf.precision import Dense

#: PyTorch's `F.leaky_relu` slope (Keras' default is 0.2).
LEAKY_SLOPE = 0.01
#: PyTorch's `F.normalize` eps, squared: `tf.math.l2_normalize` clips the squared norm.
NORMALIZE_EPSILON = 1e-24


def xavier_normal() -> keras.initializers.Initializer:
    """PyTorch's `nn.init.xavier_normal_`: an untruncated normal, std sqrt(2 / (fan_in + fan_out)).

    A new initializer for every weight. Keras fixes an unseeded initializer's seed when it is created, so
    one shared instance gives every weight of a shape the same values, and one created at import takes
    its seed before `keras.utils.set_random_seed` runs, so the run's seed does not fix it.
    """
    return keras.initializers.VarianceScaling(1.0, "fan_avg", "untruncated_normal")


def torch_linear(name: str, input_dim: int, units: int, xavier_kernel: bool = False) -> Dense:
    """A built `Dense` started as PyTorch's `nn.Linear` is, the kernel Xavier-normal if `xavier_kernel`.

    PyTorch's default is kaiming_uniform(a=sqrt(5)) for the weight and U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    for the bias, which are the same bound.
    """
    bound = 1.0 / math.sqrt(input_dim)

    def uniform() -> keras.initializers.Initializer:  # one per weight (see `xavier_normal`)
        return keras.initializers.RandomUniform(-bound, bound)

    layer = Dense(units, kernel_initializer=xavier_normal() if xavier_kernel else uniform(),
                  bias_initializer=uniform(), name=name)
    layer.build((None, input_dim))
    return layer
