"""The ablation: the right six configurations per seed, seed statistics, and resumption from run folders."""

import json
import math
from pathlib import Path

import pytest

from mrdib_tf.experiments.ablation import ablation_runs, run_ablation
from mrdib_tf.experiments.config import RunConfig
from mrdib_tf.experiments.training import FitResult
from tests.run_folders import write_run_folder

BASE = RunConfig(dataset="fake", backbone="vbpr", seed=5, alpha_kl=0.01, alpha_mi=0.02, alpha_unique=0.03, epochs=7)

#: Made-up test recall@20 per (variant, seed); the other metrics are fixed multiples of it.
RECALL20 = {
    ("full", 5): 0.30, ("full", 6): 0.34,
    ("alpha_kl-0", 5): 0.28, ("alpha_kl-0", 6): 0.29,
    ("alpha_mi-0", 5): 0.27, ("alpha_mi-0", 6): 0.31,
    ("alpha_unique-0", 5): 0.26, ("alpha_unique-0", 6): 0.26,
    ("alpha_mi-alpha_unique-0", 5): 0.25, ("alpha_mi-alpha_unique-0", 6): 0.27,
    ("bare", 5): 0.20, ("bare", 6): 0.21,
}
FACTORS = {"recall@10": 0.5, "recall@20": 1.0, "ndcg@10": 0.25, "ndcg@20": 0.4}


class FolderWritingTrainer:
    """Stands in for `train(config)[0]`: writes the run folder a Trainer would, with made-up metrics."""

    def __init__(self, stop_at_call: int | None = None):
        self.calls: list[RunConfig] = []
        self.stop_at_call = stop_at_call

    def __call__(self, config: RunConfig) -> FitResult:
        self.calls.append(config)
        if len(self.calls) == self.stop_at_call:
            raise KeyboardInterrupt
        folder = Path(config.run_dir)
        value = RECALL20[(folder.parent.name, config.seed)]
        test = {m: value * f for m, f in FACTORS.items()}
        write_run_folder(folder, config, test=test, valid=test)
        return FitResult(best_epoch=2, valid=test, test=test, epoch_seconds=[1.0] * 3, eval_seconds=[0.25] * 3)


def test_ablation_builds_the_five_mrdib_variants_and_the_bare_backbone_per_seed(tmp_path):
    runs = ablation_runs(BASE, n_seeds=2, root=tmp_path)
    got = [(r.variant.name, r.seed, r.config.mrdib, r.config.alpha_kl, r.config.alpha_mi, r.config.alpha_unique) for r in runs]
    assert got == [
        ("full", 5, True, 0.01, 0.02, 0.03),
        ("alpha_kl-0", 5, True, 0.0, 0.02, 0.03),
        ("alpha_mi-0", 5, True, 0.01, 0.0, 0.03),
        ("alpha_unique-0", 5, True, 0.01, 0.02, 0.0),
        ("alpha_mi-alpha_unique-0", 5, True, 0.01, 0.0, 0.0),
        ("bare", 5, False, 0.01, 0.02, 0.03),
        ("full", 6, True, 0.01, 0.02, 0.03),
        ("alpha_kl-0", 6, True, 0.0, 0.02, 0.03),
        ("alpha_mi-0", 6, True, 0.01, 0.0, 0.03),
        ("alpha_unique-0", 6, True, 0.01, 0.02, 0.0),
        ("alpha_mi-alpha_unique-0", 6, True, 0.01, 0.0, 0.0),
        ("bare", 6, False, 0.01, 0.02, 0.03),
    ]
    for run in runs:  # nothing else changes
        assert run.config.replace(alpha_kl=0.01, alpha_mi=0.02, alpha_unique=0.03, mrdib=True, seed=5, run_dir=None) == BASE
        assert run.config.run_dir == str(tmp_path / run.variant.name / f"seed-{run.seed}")


def test_ablation_table_is_mean_and_sample_std_over_seeds(tmp_path):
    run_ablation(BASE, 2, tmp_path, FolderWritingTrainer(), report=lambda line: None)
    data = json.loads((tmp_path / "ablation.json").read_text())
    by_name = {v["name"]: v for v in data["variants"]}
    assert list(by_name) == ["full", "alpha_kl-0", "alpha_mi-0", "alpha_unique-0", "alpha_mi-alpha_unique-0", "bare"]
    # full: 0.30, 0.34 -> mean 0.32, sample std sqrt(2 * 0.02**2 / 1) = 0.02 * sqrt(2)
    full = by_name["full"]
    assert full["n"] == 2 and [r["seed"] for r in full["runs"]] == [5, 6]
    assert full["test_mean"]["recall@20"] == pytest.approx(0.32)
    assert full["test_std"]["recall@20"] == pytest.approx(0.02 * math.sqrt(2))
    assert full["test_mean"]["ndcg@10"] == pytest.approx(0.08)                 # 0.25 x 0.32
    assert full["test_std"]["ndcg@10"] == pytest.approx(0.005 * math.sqrt(2))  # 0.25 x the std
    assert by_name["alpha_unique-0"]["test_std"]["recall@20"] == pytest.approx(0.0)
    assert by_name["bare"]["test_mean"]["recall@10"] == pytest.approx(0.1025)  # 0.5 x (0.20 + 0.21) / 2
    markdown = (tmp_path / "ablation.md").read_text()
    assert "12 of 12 runs finished" in markdown
    assert "| full MRdIB | 0.01 | 0.02 | 0.03 | 2 | 0.1600 ± 0.0141 | 0.3200 ± 0.0283 |" in markdown
    assert "| bare backbone (no MRdIB) | - | - | - | 2 | 0.1025 ± 0.0035 | 0.2050 ± 0.0071 |" in markdown


def test_ablation_resumes_from_finished_run_folders(tmp_path):
    first = FolderWritingTrainer(stop_at_call=3)
    with pytest.raises(KeyboardInterrupt):
        run_ablation(BASE, 2, tmp_path, first, report=lambda line: None)
    assert "2 of 12 runs finished" in (tmp_path / "ablation.md").read_text()

    second = FolderWritingTrainer()
    run_ablation(BASE, 2, tmp_path, second, report=lambda line: None)
    assert len(second.calls) == 10 and {c.run_dir for c in first.calls[:2]}.isdisjoint(c.run_dir for c in second.calls)
    assert second.calls[0] == first.calls[2]  # the interrupted run is trained again

    third = FolderWritingTrainer()
    lines: list[str] = []
    run_ablation(BASE, 2, tmp_path, third, report=lines.append)
    assert third.calls == [] and sum("reused its finished run" in line for line in lines) == 12


@pytest.mark.parametrize(("changes", "n_seeds", "message"), [
    ({"mrdib": False}, 1, "start from MRdIB on"),
    ({"alpha_mi": 0.0}, 1, "alpha_mi is not"),
    ({}, 0, "--seeds must be at least 1"),
])
def test_ablation_refuses_configurations_that_would_repeat_a_variant(tmp_path, changes, n_seeds, message):
    with pytest.raises(ValueError, match=message):
        ablation_runs(BASE.replace(**changes), n_seeds, tmp_path)
