"""Search: the objective is validation only, an interrupted search resumes, Hyperband's budget is `epochs`.

The train function is injected: trial results are made up so that validation and test disagree by
construction (validation rewards a large alpha_kl, test a small one).
"""

import csv
import json
import math
from pathlib import Path

import pytest

from mrdib_tf.experiments.config import RunConfig
from mrdib_tf.experiments.training import FitResult
from mrdib_tf.experiments.tuning import PAPER_ALPHA_RANGE, Search, SearchSettings, trial_config

BASE = RunConfig(dataset="fake", backbone="vbpr", seed=7, epochs=5, patience=2)
FAMILIES, KS = ("recall", "ndcg", "precision", "map"), (5, 10, 20, 50)


def valid_value(alpha_kl: float) -> float:
    return 1.0 + math.log10(alpha_kl) / 10.0      # increases with alpha_kl


def test_value(alpha_kl: float) -> float:
    return -math.log10(alpha_kl) / 10.0           # decreases with alpha_kl


test_value.__test__ = False  # a helper, not a test


def _metrics(value: float) -> dict[str, float]:
    return {f"{family}@{k}": value for family in FAMILIES for k in KS}


class DisagreeingTrainer:
    """Stands in for `train(config)[0]`; records every config; can raise at a given call."""

    def __init__(self, fail_at_call: int | None = None, error: type[BaseException] = KeyboardInterrupt):
        self.calls: list[RunConfig] = []
        self.fail_at_call = fail_at_call
        self.error = error

    def __call__(self, config: RunConfig) -> FitResult:
        self.calls.append(config)
        if len(self.calls) == self.fail_at_call:
            raise self.error("injected")
        return FitResult(best_epoch=2, valid=_metrics(valid_value(config.alpha_kl)),
                         test=_metrics(test_value(config.alpha_kl)),
                         epoch_seconds=[0.5, 0.5, 0.5], eval_seconds=[0.1, 0.1, 0.1])


def _search(folder: Path, trainer, lines: list[str] | None = None, **settings) -> Search:
    settings = {"tuner": "random", "max_trials": 4, **settings}
    return Search(BASE, SearchSettings(**settings), folder, trainer,
                  report=(lines.append if lines is not None else lambda line: None))


def _folder_names(configs: list[RunConfig]) -> list[str]:
    return [Path(c.run_dir).name for c in configs]


@pytest.mark.parametrize("tuner", ["random", "bayesian"])
def test_choice_follows_validation_not_test(tmp_path, tuner):
    trainer = DisagreeingTrainer()
    outcome = _search(tmp_path / "search", trainer, tuner=tuner).run()

    alpha_kls = [r.alpha_kl for r in outcome.records]
    assert len(alpha_kls) == 4 and len(set(alpha_kls)) == 4
    assert all(PAPER_ALPHA_RANGE[0] <= getattr(r, a) <= PAPER_ALPHA_RANGE[1]
               for r in outcome.records for a in ("alpha_kl", "alpha_mi", "alpha_unique"))
    best_alpha_kl = max(alpha_kls)
    assert outcome.best_config.alpha_kl == best_alpha_kl
    assert outcome.best_objective == pytest.approx(valid_value(best_alpha_kl))
    # The chosen trial has the WORST test value of all trials: test played no part in the choice.
    assert outcome.retrained.test["recall@20"] == pytest.approx(min(test_value(a) for a in alpha_kls))
    # The retrain is the best trial's configuration with the same seed, in best/.
    best_trial_config = next(c for c in trainer.calls if c.alpha_kl == best_alpha_kl)
    assert trainer.calls[-1] == best_trial_config.replace(run_dir=str(tmp_path / "search" / "best"))
    assert trainer.calls[-1].seed == BASE.seed
    # The oracle was told validation metrics and bookkeeping only.
    for trial in outcome_trials(tmp_path / "search"):
        assert set(trial["metrics"]["metrics"]) == {"valid_recall@20", "best_epoch", "epochs", "seconds"}


def outcome_trials(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "keras_tuner").glob("trial_*/trial.json"))]


def test_trial_table_and_best_json_hold_the_measured_values(tmp_path):
    folder = tmp_path / "search"
    trainer = DisagreeingTrainer()
    outcome = _search(folder, trainer).run()

    with open(folder / "trials.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["trial"]) for r in rows] == [1, 2, 3, 4]
    assert [r["id"] for r in rows] == ["0", "1", "2", "3"]
    trained = {c.run_dir: c for c in trainer.calls}
    for row in rows:
        config = trained[str(folder / "trials" / f"trial_{row['id']}")]
        assert float(row["alpha_kl"]) == pytest.approx(config.alpha_kl)
        assert float(row["alpha_unique"]) == pytest.approx(config.alpha_unique)
        assert float(row["lr"]) == BASE.lr
        assert float(row["objective"]) == pytest.approx(valid_value(float(row["alpha_kl"])))
        assert (row["status"], row["best_epoch"], row["epochs"]) == ("COMPLETED", "2", "3")
    best_row = max(rows, key=lambda r: float(r["objective"]))
    best = json.loads((folder / "best.json").read_text())
    assert best["trial"] == int(best_row["trial"]) == outcome.best_trial
    assert best["retrained_test"]["recall@20"] == pytest.approx(test_value(float(best_row["alpha_kl"])))
    markdown = (folder / "trials.md").read_text()
    assert f"| {best_row['trial']} * | {best_row['id']} | COMPLETED |" in markdown
    assert (folder / "objective.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_interrupted_search_resumes_without_retraining_finished_trials(tmp_path):
    folder = tmp_path / "search"
    first = DisagreeingTrainer(fail_at_call=2)  # Ctrl-C during the second trial
    with pytest.raises(KeyboardInterrupt):
        _search(folder, first, tuner="bayesian").run()

    second = DisagreeingTrainer()
    lines: list[str] = []
    outcome = _search(folder, second, lines, tuner="bayesian").run()

    assert [r.status for r in outcome.records] == ["COMPLETED"] * 4
    assert _folder_names(first.calls) == ["trial_0", "trial_1"]
    assert _folder_names(second.calls) == ["trial_1", "trial_2", "trial_3", "best"]
    # The interrupted trial is re-run with the values the oracle gave it before.
    interrupted, rerun = first.calls[1], second.calls[0]
    assert (rerun.alpha_kl, rerun.alpha_mi, rerun.alpha_unique) == (interrupted.alpha_kl, interrupted.alpha_mi, interrupted.alpha_unique)
    assert outcome.records[0].alpha_kl == first.calls[0].alpha_kl
    assert any("resuming with 1 trial(s) finished" in line for line in lines)
    assert any(line.startswith("[tune] trial 4 of 4 done") and "best so far" in line and "elapsed" in line
               for line in lines)


def test_a_search_interrupted_in_its_first_trial_starts_that_trial_again(tmp_path):
    folder = tmp_path / "search"
    first = DisagreeingTrainer(fail_at_call=1)  # KerasTuner has saved no tuner state yet
    with pytest.raises(KeyboardInterrupt):
        _search(folder, first, tuner="bayesian").run()
    second = DisagreeingTrainer()
    outcome = _search(folder, second, tuner="bayesian").run()
    assert _folder_names(second.calls) == ["trial_0", "trial_1", "trial_2", "trial_3", "best"]
    assert second.calls[0].alpha_kl == first.calls[0].alpha_kl  # the oracle's seeded draw is repeated
    assert [r.status for r in outcome.records] == ["COMPLETED"] * 4


def test_a_finished_search_can_be_extended_but_not_changed(tmp_path):
    folder = tmp_path / "search"
    _search(folder, DisagreeingTrainer(), max_trials=2).run()

    with pytest.raises(ValueError, match=r"alpha_range: \(0\.0001, 0\.05\) there, \(0\.001, 0\.01\) now"):
        _search(folder, DisagreeingTrainer(), max_trials=2, alpha_range=(1e-3, 1e-2))
    more = DisagreeingTrainer()
    outcome = _search(folder, more, max_trials=3).run()
    assert _folder_names(more.calls) == ["trial_2", "best"]
    assert len(outcome.records) == 3


def test_a_failed_trial_is_recorded_and_the_search_goes_on(tmp_path):
    folder = tmp_path / "search"
    trainer = DisagreeingTrainer(fail_at_call=2, error=FloatingPointError)  # a diverging trial
    outcome = _search(folder, trainer).run()

    assert [r.status for r in outcome.records] == ["COMPLETED", "FAILED", "COMPLETED", "COMPLETED"]
    assert outcome.records[1].objective is None
    completed = [r.alpha_kl for r in outcome.records if r.status == "COMPLETED"]
    assert outcome.best_config.alpha_kl == max(completed)


def test_a_data_error_stops_the_search_with_its_message(tmp_path):
    trainer = DisagreeingTrainer(fail_at_call=1, error=ValueError)
    with pytest.raises(ValueError, match="injected"):
        _search(tmp_path / "search", trainer).run()
    assert len(trainer.calls) == 1


def test_hyperband_budget_becomes_the_trials_epochs(tmp_path):
    trainer = DisagreeingTrainer()
    base_epochs = 9  # factor 3: Hyperband's first bracket runs its trials for 9 / 3**2 = 1 epoch
    search = Search(BASE.replace(epochs=base_epochs), SearchSettings(tuner="hyperband", max_trials=5),
                    tmp_path / "search", trainer, report=lambda line: None)
    outcome = search.run()

    budgets = {tid: t.hyperparameters.values["tuner/epochs"] for tid, t in search.oracle.trials.items()}
    assert len(budgets) == 5
    for config in trainer.calls[:-1]:
        assert config.epochs == budgets[Path(config.run_dir).name.removeprefix("trial_")] == 1
    assert trainer.calls[-1].epochs == base_epochs  # the best configuration is retrained with the full budget
    assert outcome.best_config.alpha_kl == max(r.alpha_kl for r in outcome.records)


def test_trial_config_applies_tuned_values_and_nothing_else():
    config = trial_config(BASE, {"alpha_kl": 0.01, "alpha_mi": 0.002, "alpha_unique": 0.0003, "lr": 0.005,
                                 "tuner/epochs": 3, "tuner/round": 1}, "x/trial_1")
    assert config == BASE.replace(alpha_kl=0.01, alpha_mi=0.002, alpha_unique=0.0003, lr=0.005, epochs=3, run_dir="x/trial_1")
    assert trial_config(BASE, {"alpha_kl": 0.01, "alpha_mi": 0.02, "alpha_unique": 0.03}, "y").lr == BASE.lr


def test_tuned_learning_rate_is_searched_in_its_range(tmp_path):
    trainer = DisagreeingTrainer()
    _search(tmp_path / "search", trainer, max_trials=3, tune_lr=True, lr_range=(2e-4, 3e-3)).run()
    lrs = [c.lr for c in trainer.calls[:-1]]
    assert all(2e-4 <= lr <= 3e-3 for lr in lrs) and len(set(lrs)) == 3


@pytest.mark.parametrize(("changes", "settings", "message"), [
    ({"mrdib": False}, {}, "needs MRdIB on"),
    ({"valid_metric": "recall@7"}, {}, "not a metric the evaluator reports"),
    ({}, {"alpha_range": (0.0, 0.1)}, "0 < LOW < HIGH"),
    ({}, {"tuner": "grid"}, "Unknown tuner 'grid'"),
    ({}, {"max_trials": 0}, "at least 1"),
])
def test_bad_settings_are_refused(tmp_path, changes, settings, message):
    with pytest.raises(ValueError, match=message):
        Search(BASE.replace(**changes), SearchSettings(**settings), tmp_path / "s", DisagreeingTrainer())
