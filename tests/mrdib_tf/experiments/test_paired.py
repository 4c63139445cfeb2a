"""Paired comparison seed by seed: hand-worked sign-flip p-values and differences, and the paired table."""

import math

import numpy as np
import pytest

from mrdib_tf.experiments.paired import PairedDifference, paired_cell, paired_difference, sign_flip_p_value
from mrdib_tf.experiments.results import read_run
from mrdib_tf.experiments.run_report import report_json, report_paired_markdown
from tests.mrdib_tf.experiments.test_run_report import FULL, METRICS, _records
from tests.run_folders import write_run_folder


@pytest.mark.parametrize("differences, expected", [
    ([1.0, 2.0, 3.0], 2 / 8),        # only all-plus and all-minus reach |mean| 2
    ([4.0, 1.0, 1.0, 1.0], 2 / 16),  # sums of +-4 +-1 +-1 +-1: only +-7 reach 7
    ([0.02, -0.01, 0.05], 4 / 8),    # |sums| of +-.02 +-.01 +-.05: .08 and .06 twice each reach .06
    ([1.0, -1.0], 1.0),              # mean 0: every assignment is as far from 0
    ([0.5], 1.0),
])
def test_sign_flip_p_value_matches_hand_enumeration(differences, expected):
    assert sign_flip_p_value(differences) == pytest.approx(expected)


def test_sign_flip_p_value_rejects_empty_input():
    with pytest.raises(ValueError, match="at least 1 difference"):
        sign_flip_p_value([])


def test_sign_flip_p_value_is_sampled_above_sixteen_pairs():
    # 20 equal differences: only the 2 of 2^20 uniform assignments reach the observed mean, so the
    # estimate is (hits + 1) / (draws + 1) with almost surely no hit; 1 against -1 ten times: mean 0, p 1.
    assert sign_flip_p_value([1.0] * 20) == pytest.approx(1 / (2**16 + 1), abs=3 / 2**16)
    assert sign_flip_p_value([1.0, -1.0] * 10) == pytest.approx(1.0, abs=1e-4)
    # 17 pairs, twelve +1 and five -1: |sum| >= 7 when at most 5 or at least 12 signs are +, so the exact
    # p is 2 * (C(17,0) + ... + C(17,5)) / 2^17 = 2 * 9402 / 131072 = 0.1435; Monte Carlo error ~0.0014.
    assert sign_flip_p_value([1.0] * 12 + [-1.0] * 5) == pytest.approx(2 * 9402 / 2**17, abs=0.01)


def test_paired_difference_uses_shared_seeds_only():
    difference = paired_difference({1: 0.10, 2: 0.12, 3: 0.17}, {1: 0.08, 2: 0.13, 3: 0.12, 4: 0.5})
    assert difference.seeds == (1, 2, 3)
    assert difference.mean == pytest.approx(0.02)                      # .02, -.01, .05
    assert difference.std == pytest.approx(math.sqrt((0.0 + 0.03**2 + 0.03**2) / 2))
    assert difference.higher == 2
    assert difference.relative_change == pytest.approx(0.13 / 0.11 - 1)
    assert difference.p_value == pytest.approx(0.5)
    assert paired_cell(difference) == "+18.2% (+0.0200 ± 0.0300, 2/3 up, p 0.5)"
    assert paired_difference({1: 0.1}, {2: 0.1}) is None
    assert paired_difference({1: 0.3}, {1: 0.2}).std is None


def test_paired_table_sets_each_mrdib_group_against_its_bare_settings(tmp_path):
    table = report_paired_markdown(_records(tmp_path), "test", METRICS)
    # full (seeds 1-3) against bare (seeds 1, 2): recall@20 .10 - .08, .12 - .09; ndcg@20 .05 - .04, .06 - .05
    assert ("| fake | vbpr | 0.005 | 0.05 | 0.005 | 2 | 1, 2 | +29.4% (+0.0250 ± 0.0071, 2/2 up, p 0.5) "
            "| +22.2% (+0.0100 ± 0.0000, 2/2 up, p 0.5) |") in table          # one paired group: no other column
    assert "lightgcn" not in table                                      # a bare group is never a method row
    assert "Not paired: fake/vbpr" in table and "slow-lr): no bare run of the same settings on a shared seed" in table


def test_a_seed_run_twice_is_not_paired(tmp_path):
    records = _records(tmp_path)
    records.append(read_run(write_run_folder(tmp_path / "bare-1-again", FULL.replace(mrdib=False, seed=1),
                                             test={"recall@20": 0.5, "ndcg@20": 0.5})))
    table = report_paired_markdown(records, "test", METRICS)
    assert "+29.4%" not in table and "full-1): a seed run twice" in table


def test_paired_json_and_settings_that_tell_mrdib_groups_apart(tmp_path):
    records = _records(tmp_path)
    off_path = FULL.replace(codes_on_main_path=False)
    records += [read_run(write_run_folder(tmp_path / f"off-{seed}", off_path.replace(seed=seed),
                                          test={"recall@20": r, "ndcg@20": 0.05})) for seed, r in ((1, 0.07), (2, 0.10))]
    table = report_paired_markdown(records, "test", METRICS)
    # two paired MRdIB groups with the same alphas: the setting that tells them apart gets a column.
    # Off the main path against bare: .07 - .08 and .10 - .09, mean 0, std sqrt(2) * .01
    assert ("| fake | vbpr | 0.005 | 0.05 | 0.005 | codes_on_main_path=False | 2 | 1, 2 | "
            "+0.0% (+0.0000 ± 0.0141, 1/2 up, p 1) |") in table
    assert "| codes_on_main_path=True | 2 | 1, 2 | +29.4% (+0.0250 ± 0.0071, 2/2 up, p 0.5) |" in table
    data = report_json(records, "test", ["recall@20"])
    full = next(p for p in data["paired"] if p["settings"]["codes_on_main_path"] and p["settings"]["lr"] == 1e-3)
    assert full["seeds"] == [1, 2]
    assert full["against_bare"]["recall@20"]["mean_difference"] == pytest.approx(0.025)
    assert full["against_bare"]["recall@20"]["higher"] == 2 and full["against_bare"]["recall@20"]["p_value"] == 0.5


def test_the_pooled_gain_of_one_cell_is_its_relative_change_and_its_interval_the_bootstrap_of_the_seeds():
    from mrdib_tf.experiments.paired import pooled_relative_gain

    cell = PairedDifference((1, 2, 3, 4), (1.1, 1.2, 1.0, 1.3), (1.0, 1.0, 1.0, 1.0))
    estimate, low, high = pooled_relative_gain([cell])
    assert estimate == pytest.approx(0.15)
    # every resample's mean of the method lies between its smallest and largest value: 1.0 and 1.3
    assert 0.0 <= low < estimate < high <= 0.3
    rng = np.random.default_rng(0)  # the same draws, by hand
    picks = rng.integers(0, 4, size=(10_000, 4))
    want = np.quantile(np.array([1.1, 1.2, 1.0, 1.3])[picks].mean(axis=1) - 1.0, [0.025, 0.975])
    np.testing.assert_allclose((low, high), want)


def test_pooling_averages_the_cells_and_a_constant_gain_has_a_point_interval():
    from mrdib_tf.experiments.paired import pooled_relative_gain

    up = PairedDifference((1, 2, 3), (1.2, 2.4, 3.6), (1.0, 2.0, 3.0))  # +20% on every seed
    down = PairedDifference((1, 2), (0.9, 1.8), (1.0, 2.0))  # -10% on every seed
    estimate, low, high = pooled_relative_gain([up, down])
    assert estimate == pytest.approx(0.05) and low == pytest.approx(0.05) and high == pytest.approx(0.05)


def test_the_minimum_detectable_difference_is_the_t_formula():
    from mrdib_tf.experiments.paired import minimum_detectable_difference

    # t_{0.975, 4} = 2.7764, t_{0.8, 4} = 0.9410 (tables); sd 0.01 over sqrt(5)
    assert minimum_detectable_difference(0.01, 5) == pytest.approx((2.7764 + 0.9410) * 0.01 / 5**0.5, rel=1e-3)
    with pytest.raises(ValueError):
        minimum_detectable_difference(0.01, 1)
