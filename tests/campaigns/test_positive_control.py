"""campaigns/positive_control.py: which jobs are ready as the choices on validation become known."""

import importlib.util
import json
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "campaigns" / "positive_control.py"
_SPEC = importlib.util.spec_from_file_location("positive_control", _PATH)
campaign = importlib.util.module_from_spec(_SPEC)
sys.modules["positive_control"] = campaign  # dataclasses look their module up there
_SPEC.loader.exec_module(campaign)


def _finish(root, cell, arm, value, seed, valid, test=0.1):
    folder = campaign.run_folder(root, cell, arm, value, seed)
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"valid": {"recall@20": valid, "recall@5": valid / 3},
                                                     "test": {"recall@20": test, "recall@5": test / 3}}))


def _ready(root, arms):
    return [(f.parent.name, f.name) for f, _ in campaign.ready_jobs(root, ["syn"], {"syn": arms})]


def test_only_the_bare_grid_is_ready_until_it_has_finished(tmp_path):
    assert _ready(tmp_path, ["paper"]) == [("syn", f"bare-{v}-s999") for v in campaign.BARE_GRID]
    for value in campaign.BARE_GRID[:-1]:
        _finish(tmp_path, "syn", "bare", value, 999, valid=0.2)
    assert _ready(tmp_path, ["paper"]) == [("syn", f"bare-{campaign.BARE_GRID[-1]}-s999")]


def test_the_arms_tune_at_the_bare_choice_and_run_the_paired_seeds_at_their_own_choice(tmp_path):
    for value, valid in zip(campaign.BARE_GRID, (0.1, 0.3, 0.2, 0.05)):
        _finish(tmp_path, "syn", "bare", value, 999, valid)
    ready = dict(campaign.ready_jobs(tmp_path, ["syn"], {"syn": ["paper"]}))
    bare = campaign.BARE_GRID[1]
    seeds = [campaign.run_folder(tmp_path, "syn", "bare", bare, s) for s in campaign.PAIRED_SEEDS]
    tunes = [campaign.run_folder(tmp_path, "syn", "paper", v, 999) for v in campaign.ARMS["paper"].grid]
    assert list(ready) == seeds + tunes
    command = ready[tunes[0]]
    assert command[command.index("--reg-weight") + 1] == bare  # the arm shares the bare choice
    assert command[command.index("--alpha-kl") + 1] == campaign.ARMS["paper"].grid[0]
    for value, valid in zip(campaign.ARMS["paper"].grid, (0.31, 0.35, 0.33)):
        _finish(tmp_path, "syn", "paper", value, 999, valid)
    ready = _ready(tmp_path, ["paper"])
    chosen = campaign.ARMS["paper"].grid[1]
    assert ready[-5:] == [("syn", f"paper-{chosen}-s{s}") for s in campaign.PAIRED_SEEDS]


def test_the_rate_arm_runs_its_fixed_default_on_the_paired_seeds_before_its_tuning_is_known(tmp_path):
    for value in campaign.BARE_GRID:
        _finish(tmp_path, "syn", "bare", value, 999, valid=0.2)
    ready = _ready(tmp_path, ["rate"])
    default = campaign.DEFAULT_TARGET_RATE
    assert [("syn", f"rate-{default}-s{s}") for s in campaign.PAIRED_SEEDS] == ready[-5:]


def test_the_pooled_report_reads_paired_seeds(tmp_path):
    for cell in ("syn", "syn-nuis2048"):
        for value in campaign.BARE_GRID:
            _finish(tmp_path, cell, "bare", value, 999, valid=0.2 if value == "0.3" else 0.1)
        for value in campaign.ARMS["noise"].grid:
            _finish(tmp_path, cell, "noise", value, 999, valid=0.25 if value == "0.3" else 0.1)
        for seed in campaign.PAIRED_SEEDS:
            _finish(tmp_path, cell, "bare", "0.3", seed, 0.2, test=0.10)
            _finish(tmp_path, cell, "noise", "0.3", seed, 0.2, test=0.11)  # +10% on every seed
    text = campaign.report(tmp_path, ["syn", "syn-nuis2048"], {"syn": ["noise"], "syn-nuis2048": ["noise"]}, None)
    assert "| syn-nuis2048 | noise | 0.3 (0.2500; 0.2000) | +0.0% [+0.0, +0.0] | +10.0% [+10.0, +10.0], 5/5, p 0.062" in text
    assert "| noise | 1 | +10.0% [+10.0, +10.0] | +10.0% [+10.0, +10.0] |" in text  # only the corrupted cell pools
