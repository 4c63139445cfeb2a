"""Every command turns an error the user can fix into one line `error: ...` and exit code 2, no traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from data_pipeline.registry import DATA_DIR_ENV, PROJECT_ROOT
from mrdib_tf.experiments.config import RunConfig
from mrdib_tf.experiments.run_report import DEFAULT_METRICS
from tests.export_helpers import start_python, subprocess_env, tiny_runs
from tests.run_folders import write_run_folder
from trainers import ablate, diagnose, evaluate, fit, report, tune
from trainers.console import run_command


def test_run_command_prints_value_and_os_errors_on_one_line_with_code_2(capsys):
    @run_command
    def bad_setting(argv):
        raise ValueError("--epochs must be >= 1,\n  got 0.")

    @run_command
    def bad_path(argv):
        open(argv[0], encoding="utf-8")

    assert bad_setting(None) == 2
    assert capsys.readouterr().err == "error: --epochs must be >= 1, got 0.\n"
    assert bad_path(["/no/such/file.md"]) == 2
    assert capsys.readouterr().err == "error: /no/such/file.md: No such file or directory\n"


def test_run_command_passes_results_and_other_errors_through():
    assert run_command(lambda argv: 7)(None) == 7

    @run_command
    def bug(argv):
        raise KeyError("a bug, not a user error")

    with pytest.raises(KeyError):
        bug(None)


@pytest.fixture
def blocked(tmp_path):
    """A path below a regular file: no folder can be made there."""
    (tmp_path / "a_file").write_text("")
    return tmp_path / "a_file" / "out"


def _single_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_fit_with_an_empty_feature_file(tiny_folder, tmp_path, capsys):
    folder = tmp_path / "tiny"
    shutil.copytree(tiny_folder, folder)
    (folder / "image_feat.npy").write_bytes(b"")
    assert fit.main(["--data-dir", str(folder), "--run-dir", str(tmp_path / "run")]) == 2
    line = _single_error_line(capsys.readouterr().err)
    assert line == f"error: {folder / 'image_feat.npy'}: the file is empty (0 bytes); expected a .npy array " \
                   "[n_items, dim]."


@pytest.mark.parametrize("command", [fit, tune, ablate])
def test_a_run_dir_that_cannot_be_made(command, tiny_folder, blocked, capsys):
    argv = ["--data-dir", str(tiny_folder), "--run-dir", str(blocked), "--epochs", "1"]
    assert command.main(argv) == 2
    line = _single_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {blocked}") and line.endswith(": Not a directory")


def test_report_output_in_a_missing_folder(tmp_path, capsys):
    metrics = dict.fromkeys(DEFAULT_METRICS, 0.1)
    run = write_run_folder(tmp_path / "run", RunConfig(dataset="fake"), test=metrics)
    output = tmp_path / "missing" / "table.md"
    assert report.main([str(run), "--output", str(output)]) == 2
    line = _single_error_line(capsys.readouterr().err)
    assert line == f"error: {output}: No such file or directory"


@pytest.mark.parametrize("command", [evaluate, diagnose])
def test_a_run_dir_that_is_a_file(command, blocked, capsys):
    assert command.main(["--run-dir", str(blocked.parent)]) == 2
    line = _single_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {blocked.parent}: not a folder")


def test_export_to_an_output_folder_that_cannot_be_made(tmp_path_factory, blocked):
    base = tmp_path_factory.getbasetemp()
    runs = tiny_runs(base)
    process = start_python(["-m", "trainers.export", "--run-dir", str(runs["bare"]), "--out", str(blocked)],
                           subprocess_env(base))
    _, stderr = process.communicate()
    assert process.returncode == 2
    assert _single_error_line(stderr).startswith(f"error: {blocked}")


def test_the_amazon_datasets_without_features_stop_with_the_missing_files(tmp_path):
    env = subprocess_env(tmp_path)
    env.pop(DATA_DIR_ENV, None)
    result = subprocess.run([sys.executable, "-m", "trainers.fit", "--dataset", "sports", "--run-dir",
                             str(tmp_path / "run")], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 2
    line = _single_error_line(result.stderr)
    data = PROJECT_ROOT / "data" / "sports"
    assert line.startswith(f"error: dataset 'sports': no feature files (<modality>_feat.npy) in {data}/.")
    for expected in ("image_feat.npy (float32 [18357, 4096]", "text_feat.npy (float32 [18357, 384]",
                     "https://drive.google.com/drive/folders/13cBy1EA_saTUuXxVllKgtfci2A09jyaG",
                     "$MRDIB_DATA_DIR/sports/"):
        assert expected in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, expected", [
    (["--epochs", "0"], "error: --epochs must be >= 1, got 0."),
    (["--patience", "-1"], "error: --patience must be >= 0, got -1."),
    (["--lr", "nan"], "error: --lr must be > 0, got nan."),
    (["--alpha-kl", "-0.1"], "error: --alpha-kl must be >= 0, got -0.1."),
    (["--batch-size", "0"], "error: --batch-size must be >= 1, got 0."),
])
def test_out_of_range_settings_are_one_error_line_and_nothing_is_written(flags, expected, tmp_path, capsys):
    from trainers import fit

    assert fit.main(["--run-dir", str(tmp_path / "run"), *flags]) == 2
    assert capsys.readouterr().err.strip() == expected
    assert not (tmp_path / "run").exists()
