"""Every backbone's random starting weights: fixed by the run's seed (`keras.utils.set_random_seed`), changed
by another seed, and drawn independently of each other, so no two weights of one shape start equal."""

import itertools

import keras
import numpy as np
import pytest

from data_pipeline import load_dataset
from mrdib_tf.backbones.torch_defaults import torch_linear, xavier_normal
from mrdib_tf.experiments.config import RunConfig
from mrdib_tf.experiments.models import BACKBONES, build_backbone


def _starting_weights(dataset, backbone: str, seed: int) -> dict[str, tuple[bool, np.ndarray]]:
    keras.utils.set_random_seed(seed)
    model = build_backbone(dataset, RunConfig(backbone=backbone, seed=seed))
    return {v.path: (v.trainable, v.numpy()) for v in model.weights}


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_the_seed_fixes_every_random_weight_and_no_two_start_alike(tiny_folder, backbone):
    dataset = load_dataset(data_dir=tiny_folder)
    first, again, other = (_starting_weights(dataset, backbone, seed) for seed in (1, 1, 2))
    for path, (_, value) in first.items():
        np.testing.assert_array_equal(value, again[path][1], err_msg=f"{backbone} {path}: seed 1 twice")

    def is_data(value):  # the feature tables, which MGCN and FREEDOM fine-tune
        return any(value.shape == f.shape and np.array_equal(value, f) for f in dataset.features.values())

    learned = [p for p, (trainable, v) in first.items() if trainable and np.ptp(v) > 0 and not is_data(v)]
    assert learned, backbone
    for path in learned:
        assert not np.array_equal(first[path][1], other[path][1]), f"{backbone} {path} ignores the seed"

    drawn = [p for p, (_, v) in first.items() if np.ptp(v) > 0 and not np.array_equal(v, other[p][1])]
    for a, b in itertools.combinations(drawn, 2):
        if first[a][1].shape == first[b][1].shape:
            assert not np.array_equal(first[a][1], first[b][1]), f"{backbone}: {a} starts as {b}"


def test_xavier_normal_draws_afresh_for_each_weight_from_the_run_seed():
    keras.utils.set_random_seed(5)
    one, two = xavier_normal()((40, 30)), xavier_normal()((40, 30))
    keras.utils.set_random_seed(5)
    again = xavier_normal()((40, 30))
    keras.utils.set_random_seed(6)
    other = xavier_normal()((40, 30))
    np.testing.assert_array_equal(np.asarray(one), np.asarray(again))
    assert not np.array_equal(np.asarray(one), np.asarray(two))
    assert not np.array_equal(np.asarray(one), np.asarray(other))
    assert abs(np.std(np.asarray(one)) - np.sqrt(2.0 / 70)) < 0.02  # std sqrt(2 / (fan_in + fan_out))


def test_a_torch_linear_layers_bias_is_not_its_kernels_first_row():
    keras.utils.set_random_seed(5)
    layer = torch_linear("linear", 9, 4)
    kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
    assert not np.allclose(bias, kernel[0])
    assert np.abs(kernel).max() <= 1 / 3 and np.abs(bias).max() <= 1 / 3  # U(-1/sqrt(fan_in), 1/sqrt(fan_in))
