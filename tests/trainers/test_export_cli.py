"""`python -m trainers.export` on two tiny trained runs (VBPR with and without MRdIB), checked from outside:
the served top-K equals the trainer's full ranking, MRdIB leaves nothing in the export, the metadata
is the run's, and TensorFlow's own saved_model_cli reads and runs it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.export_helpers import (
    TINY_TOP_K, cache_env, finish, start, start_probe, start_python, subprocess_env, tiny_runs,
)

SAVED_MODEL_CLI = str(Path(sys.executable).with_name("saved_model_cli"))

# One process runs the CLI's `main` four times (as `python -m trainers.export` would): it must set
# TF_USE_LEGACY_KERAS itself, before TensorFlow is imported (the environment does not).
EXPORT_SCRIPT = """
import json, sys
import trainers.export as export
mrdib, bare, out, k = sys.argv[1:5]
codes = [export.main(["--run-dir", mrdib, "--out", out, "--top-k", k]),
         export.main(["--run-dir", bare, "--out", out, "--top-k", k, "--name", "bare"]),
         export.main(["--run-dir", out + "/no-such-run", "--out", out])]
print(json.dumps(codes))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.getbasetemp()
    runs = tiny_runs(base)
    tmp = tmp_path_factory.mktemp("export_cli")
    out = tmp / "saved_models"
    exporter = start_python(["-c", EXPORT_SCRIPT, str(runs["mrdib"]), str(runs["bare"]), str(out), str(TINY_TOP_K)],
                            subprocess_env(base))
    stdout = finish(exporter)
    codes = json.loads(stdout.splitlines()[-1])
    mrdib_dir, bare_dir = out / "syn-vbpr" / "1", out / "bare" / "1"
    users = list(range(80))
    probe, probe_out = start_probe([
        {"model_dir": str(mrdib_dir), "requests": [
            {"signature": "serving_default", "inputs": {"user_id": users}},
            {"signature": "metadata", "inputs": {"unused": 0}},
            {"signature": "score", "inputs": {"user_id": users, "item_id": [u % 7 for u in users]}}]},
        {"model_dir": str(bare_dir), "requests": []},
    ], tmp)
    show = start([SAVED_MODEL_CLI, "show", "--dir", str(mrdib_dir), "--all"], subprocess_env(base))
    run = start([SAVED_MODEL_CLI, "run", "--dir", str(mrdib_dir), "--tag_set", "serve",
                        "--signature_def", "serving_default", "--input_exprs", "user_id=[3,0]"],
                       subprocess_env(base))
    return {
        "runs": runs, "out": out, "stdout": stdout, "codes": codes, "mrdib_dir": mrdib_dir,
        "show": finish(show), "run": finish(run), "probe": (finish(probe), json.loads(probe_out.read_text()))[1],
    }


@pytest.fixture(scope="module")
def restored(exported, tmp_path_factory) -> tuple[np.ndarray, np.ndarray, object]:
    """The MRdIB run's final (user, item) embeddings, reloaded in this process, and its dataset."""
    from mrdib_tf.experiments.runs import load_trained_run

    with cache_env(tmp_path_factory.getbasetemp()):
        model, dataset, _, _ = load_trained_run(exported["runs"]["mrdib"])
    users, items = (t.numpy() for t in model.final_embeddings())
    return users, items, dataset


@pytest.fixture(scope="module")
def trainer_top_k(restored) -> np.ndarray:
    """The run's top-K by the trainer's own evaluator (training items masked), for every user."""
    from mrdib_tf.metrics import FullRankingEvaluator

    users, items, dataset = restored
    return FullRankingEvaluator(dataset.train, dataset.valid).top_k(users, items, TINY_TOP_K)


def test_exports_go_to_name_and_version_with_the_dataset_backbone_default(exported):
    assert exported["codes"] == [0, 0, 2]
    assert sorted(p.name for p in exported["out"].iterdir()) == ["bare", "syn-vbpr"]
    assert [p.name for p in (exported["out"] / "syn-vbpr").iterdir()] == ["1"]
    assert f"exported {exported['mrdib_dir']}" in exported["stdout"]


def _assert_same_ranking(served: np.ndarray, expected: np.ndarray, scores: np.ndarray) -> None:
    """Served top-K ids equal the expected ones, except that items of exactly equal score may swap.

    Two items with the same embedding (or the same dot product by chance) tie; the order among ties
    is each implementation's own. Position by position the served items' scores must equal the
    expected items' scores, and they may differ in id only where those scores tie.
    """
    rows = np.arange(len(scores))[:, None]
    np.testing.assert_allclose(scores[rows, served], scores[rows, expected], rtol=1e-6, atol=1e-7)
    for row, column in zip(*np.nonzero(served != expected)):
        tied = np.isclose(scores[row], scores[row, expected[row, column]], rtol=1e-6, atol=1e-7)
        assert tied[served[row, column]], (row, column)
    assert all(len(set(ids)) == len(ids) for ids in served.tolist())


def test_served_top_k_equals_the_trainers_full_ranking_for_every_user(exported, trainer_top_k, restored):
    outputs = exported["probe"]["results"][0]["responses"][0]["outputs"]
    assert all(outputs["known_user"])
    users, items, _ = restored
    _assert_same_ranking(np.array(outputs["item_ids"]), trainer_top_k, users @ items.T)
    scores = np.array(outputs["scores"])
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_score_is_the_dot_product_of_the_runs_embeddings(exported, restored):
    users, items, _ = restored
    outputs = exported["probe"]["results"][0]["responses"][2]["outputs"]
    expected = np.sum(users * items[np.arange(80) % 7], axis=1)
    np.testing.assert_allclose(outputs["score"], expected, rtol=1e-5, atol=1e-6)
    assert all(outputs["known_user"]) and all(outputs["known_item"])


def test_mrdib_export_holds_exactly_the_variables_of_the_bare_export(exported):
    mrdib, bare = exported["probe"]["results"]
    assert mrdib["variables"] == bare["variables"]
    assert mrdib["variables_bytes"] == bare["variables_bytes"]
    assert mrdib["ops"] == bare["ops"]
    rows = np.loadtxt(exported["runs"]["mrdib"].parent / "syn" / "syn.inter", dtype=np.int64, skiprows=1)
    n_users, n_items, train_pairs = rows[:, 0].max() + 1, rows[:, 1].max() + 1, int(np.sum(rows[:, 2] == 0))
    dim = 2 * 8  # VBPR: [ID factors ; feature projection] for items, 2d free factors for users
    assert dict((name.split("/.ATTRIBUTES")[0], shape) for name, shape in mrdib["variables"]) == {
        "user_embeddings": [n_users, dim], "item_embeddings": [n_items, dim], "index/candidates": [n_items, dim],
        "index/identifiers": [n_items], "train_item_counts": [n_users], "train_keys": [train_pairs + 1],
        "popular_items": [TINY_TOP_K],
    }


def test_metadata_is_the_runs(exported):
    outputs = exported["probe"]["results"][0]["responses"][1]["outputs"]
    run = exported["runs"]["mrdib"]
    metrics = json.loads((run / "metrics.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert (outputs["backbone"], outputs["dataset"], outputs["mrdib"]) == ("vbpr", "syn", True)
    assert [outputs["alpha_kl"], outputs["alpha_mi"], outputs["alpha_unique"]] == pytest.approx(
        [config["alpha_kl"], config["alpha_mi"], config["alpha_unique"]])
    assert outputs["run_dir"] == str(run.resolve()) and outputs["best_epoch"] == metrics["best_epoch"]
    names = outputs["metric_names"]
    assert dict(zip(names, outputs["valid_metrics"])) == metrics["valid"]
    assert dict(zip(names, outputs["test_metrics"])) == metrics["test"]
    assert json.loads(outputs["config_json"]) == config


def test_saved_model_cli_shows_the_signatures_and_runs_serving_default(exported, trainer_top_k, restored):
    show = exported["show"]
    for text in ("signature_def['serving_default']", "signature_def['score']", "signature_def['metadata']",
                 "inputs['user_id'] tensor_info:", "outputs['item_ids'] tensor_info:",
                 "outputs['scores'] tensor_info:", "outputs['known_user'] tensor_info:"):
        assert text in show
    assert "dtype: DT_INT64\n        shape: (-1, 10)\n        name: StatefulPartitionedCall" in show.replace("\r", "")
    run = exported["run"]
    ids = run.split("Result for output key item_ids:")[1].split("Result for output key")[0]
    rows = [[int(v) for v in row.split()] for row in ids.replace("[", " ").split("]") if row.strip()]
    users, items, _ = restored
    _assert_same_ranking(np.array(rows), trainer_top_k[[3, 0]], (users @ items.T)[[3, 0]])
