"""`python -m trainers.evaluate`: a reloaded run reproduces its metrics.json exactly."""

from __future__ import annotations

import json

from tests.export_helpers import cache_env, tiny_runs
from trainers.console import format_metrics
from trainers.evaluate import evaluate_run, main


def test_reloaded_runs_reproduce_metrics_json_and_print_them(tmp_path_factory, capsys):
    base = tmp_path_factory.getbasetemp()
    runs = tiny_runs(base)
    with cache_env(base):
        for run in runs.values():
            metrics = json.loads((run / "metrics.json").read_text())
            assert evaluate_run(run) == {"valid": metrics["valid"], "test": metrics["test"]}
        assert main(["--run-dir", str(runs["mrdib"])]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((runs["mrdib"] / "metrics.json").read_text())
    assert f"valid:\n{format_metrics(metrics['valid'])}\n" in printed
    assert f"test:\n{format_metrics(metrics['test'])}\n" in printed


def test_a_folder_that_is_not_a_run_is_one_clear_error(tmp_path, capsys):
    assert main(["--run-dir", str(tmp_path)]) == 2
    assert f"{tmp_path / 'config.json'}: missing" in capsys.readouterr().err
