"""The exported serving model, checked from outside: hand-worked answers, a numpy full-ranking reference,
edge cases, signature types, stock ops only, versioned atomic writes and a TF Serving PredictRequest.

Exports are built in one subprocess (TFRS needs TF_USE_LEGACY_KERAS=1 before TensorFlow is imported,
which this pytest process has already done) and probed in another that imports only TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.export_helpers import finish, run_probe, start_python, subprocess_env

# Hand-worked catalogue: 4 users x 5 items, 2-d. User 3 has no training item (an unknown user).
HAND_USERS = [[1, 0], [0, 1], [1, 1], [0, 0]]
HAND_ITEMS = [[4, 0], [3, 1], [2, 0], [1, 3], [0, 2]]
HAND_TRAIN = {0: [1], 1: [3, 4], 2: [0]}
# user 0 scores [4, 3, 2, 1, 0] minus item 1; user 1 [0, 1, 0, 3, 2] minus 3, 4 (0 and 2 tie: lower
# id first); user 2 [4, 4, 2, 4, 2] minus 0. Popularity: items 0, 1, 3, 4 once, item 2 never.
HAND_TOP3 = {0: ([0, 2, 3], [4, 2, 1]), 1: ([1, 0, 2], [1, 0, 0]), 2: ([1, 3, 2], [4, 4, 2])}
HAND_POPULAR3 = [0, 1, 3]
# K = 10 is clamped to the 5 items; lists run out of untrained items and are padded with -1 / -inf.
HAND_TOP5 = {0: ([0, 2, 3, 4, -1], [4, 2, 1, 0, -np.inf]), 1: ([1, 0, 2, -1, -1], [1, 0, 0, -np.inf, -np.inf])}

BUILD_SCRIPT = """
import json, sys
import numpy as np
from data_pipeline.interactions import UserItems
from mrdib_tf.export import ExportMetadata, RetrievalModule, write_version

spec = json.loads(sys.argv[1])
out, errors = {}, {}
for case in spec["cases"]:
    train = UserItems.from_pairs(case["train_users"], case["train_items"], len(case["users"]), len(case["items"]))
    module = RetrievalModule(np.array(case["users"]), np.array(case["items"]), train, case["k"],
                             ExportMetadata(**case["metadata"]))
    out[case["name"]] = [str(write_version(module, spec["root"], case["name"])) for _ in range(case["copies"])]
    if case["leftover"]:
        leftover = __import__("pathlib").Path(spec["root"], case["name"], ".tmp-export-crashed")
        leftover.mkdir()
        (leftover / "saved_model.pb").write_bytes(b"half")
        out[case["name"]].append(str(write_version(module, spec["root"], case["name"])))
for label, call in {
    "bad_name": lambda: write_version(module, spec["root"], "7"),
    "train_mismatch": lambda: RetrievalModule(np.ones((2, 2)), np.ones((5, 2)), UserItems.from_pairs([0], [0], 3, 5),
                                              3, ExportMetadata()),
}.items():
    try:
        call()
    except ValueError as error:
        errors[label] = str(error)
print(json.dumps({"exports": out, "errors": errors}))
"""


def _pairs(train: dict[int, list[int]]) -> tuple[list[int], list[int]]:
    users = [u for u, items in train.items() for _ in items]
    return users, [i for items in train.values() for i in items]


def _random_case(seed: int = 3) -> dict:
    """Integer embeddings (exact float32 scores with many ties) and train sets of 0..9 items."""
    rng = np.random.default_rng(seed)
    users = rng.integers(-3, 4, size=(30, 4))
    items = rng.integers(-3, 4, size=(50, 4))
    train = {u: sorted(rng.choice(50, size=rng.integers(0, 10), replace=False).tolist()) for u in range(30)}
    return {"users": users.tolist(), "items": items.tolist(), "train": train}


def _numpy_top_k(case: dict, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Full ranking by a stable argsort of the masked score matrix: the reference answer."""
    scores = np.array(case["users"], np.float64) @ np.array(case["items"], np.float64).T
    for user, items in case["train"].items():
        scores[user, items] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("export")
    random_case = _random_case()
    cases = []
    for name, data, k, copies, leftover in (
        ("hand", {"users": HAND_USERS, "items": HAND_ITEMS, "train": HAND_TRAIN}, 3, 2, True),
        ("hand_big_k", {"users": HAND_USERS, "items": HAND_ITEMS, "train": HAND_TRAIN}, 10, 1, False),
        ("random", random_case, 5, 1, False),
    ):
        users, items = _pairs(data["train"])
        cases.append({
            "name": name, "users": data["users"], "items": data["items"], "train_users": users,
            "train_items": items, "k": k, "copies": copies, "leftover": leftover,
            "metadata": {"backbone": "vbpr", "dataset": name, "mrdib": True, "alpha_kl": 0.005,
                         "alpha_mi": 0.05, "alpha_unique": 0.005, "run_dir": "/runs/x", "best_epoch": 7,
                         "valid_metrics": {"recall@20": 0.25, "recall@5": 0.125},
                         "test_metrics": {"recall@20": 0.5}, "note": "hand-made"},
        })
    spec = {"root": str(tmp / "saved_models"), "cases": cases}
    builder = start_python(["-c", BUILD_SCRIPT, json.dumps(spec)], subprocess_env(tmp, TF_USE_LEGACY_KERAS="1"))
    built = json.loads(finish(builder).splitlines()[-1])
    hand, big_k, random_dir = (built["exports"][name][0] for name in ("hand", "hand_big_k", "random"))
    jobs = [
        {"model_dir": hand, "requests": [
            {"signature": "serving_default", "inputs": {"user_id": [0, 1, 2, 3, 4, -1, 10**12]}},
            {"signature": "serving_default", "inputs": {"user_id": []}},
            {"signature": "score", "inputs": {"user_id": [0, 1, 2, 0, 0, 3, -5], "item_id": [0, 3, 4, 5, -1, 0, 0]}},
            {"signature": "score", "inputs": {"user_id": [], "item_id": []}},
            {"signature": "metadata", "inputs": {"unused": 0}},
        ]},
        {"model_dir": big_k, "requests": [{"signature": "serving_default", "inputs": {"user_id": [0, 1, 3]}}]},
        {"model_dir": random_dir,
         "requests": [{"signature": "serving_default", "inputs": {"user_id": list(range(30))}}]},
    ]
    probe = run_probe(jobs, tmp)
    return {"root": tmp / "saved_models", "built": built, "probe": probe, "random_case": random_case}


def _outputs(exported: dict, job: int, request: int) -> dict:
    return exported["probe"]["results"][job]["responses"][request]["outputs"]


def test_known_users_get_the_hand_worked_top_k_without_training_items(exported):
    outputs = _outputs(exported, 0, 0)
    for user, (items, scores) in HAND_TOP3.items():
        assert outputs["item_ids"][user] == items
        assert outputs["scores"][user] == scores
    assert outputs["known_user"][:3] == [True, True, True]


def test_top_k_equals_numpy_full_ranking_with_ties_and_varied_training_sets(exported):
    case = exported["random_case"]
    outputs = _outputs(exported, 2, 0)
    expected_items, expected_scores = _numpy_top_k(case, 5)
    cold = [u for u, items in case["train"].items() if not items]
    warm = [u for u in range(30) if u not in cold]
    counts = [len(v) for v in case["train"].values()]
    assert len(warm) > 20 and max(counts) == 9  # C = 5 + 9 < 50 items: the index is really cut short
    assert min(counts) <= 5 < max(counts)  # light users (<= K = 5 training items) and a second pass for heavy ones
    np.testing.assert_array_equal(np.array(outputs["item_ids"])[warm], expected_items[warm])
    np.testing.assert_array_equal(np.array(outputs["scores"])[warm], expected_scores[warm])
    assert [outputs["known_user"][u] for u in cold] == [False] * len(cold)


def test_unknown_users_get_the_most_popular_items_with_nan_scores(exported):
    outputs = _outputs(exported, 0, 0)
    # user 3: in range but no training item; 4 and 10**12: past the end; -1: negative.
    for row in (3, 4, 5, 6):
        assert outputs["item_ids"][row] == HAND_POPULAR3
        assert all(np.isnan(outputs["scores"][row]))
    assert outputs["known_user"][3:] == [False] * 4


def test_score_is_the_dot_product_and_nan_with_flags_for_unknown_ids(exported):
    outputs = _outputs(exported, 0, 2)
    users = np.array(HAND_USERS)
    items = np.array(HAND_ITEMS)
    expected = [users[0] @ items[0], users[1] @ items[3], users[2] @ items[4]]  # training items score too
    assert outputs["score"][:3] == expected
    assert all(np.isnan(outputs["score"][3:]))
    assert outputs["known_item"] == [True, True, True, False, False, True, True]
    assert outputs["known_user"] == [True, True, True, True, True, False, False]


def test_empty_batches_give_empty_outputs(exported):
    assert _outputs(exported, 0, 1) == {"item_ids": [], "known_user": [], "scores": []}
    assert _outputs(exported, 0, 3) == {"known_item": [], "known_user": [], "score": []}


def test_k_larger_than_the_catalogue_is_clamped_and_short_lists_are_padded(exported):
    outputs = _outputs(exported, 1, 0)
    for row, user in enumerate((0, 1)):
        assert outputs["item_ids"][row] == HAND_TOP5[user][0]
        assert outputs["scores"][row] == HAND_TOP5[user][1]
    assert outputs["item_ids"][2] == [0, 1, 3, 4, 2]  # unknown user: the whole catalogue by popularity


def test_signatures_have_the_documented_names_dtypes_and_shapes(exported):
    signatures = exported["probe"]["results"][0]["signatures"]
    assert signatures["serving_default"] == {
        "inputs": {"user_id": ["int64", [-1]]},
        "outputs": {"item_ids": ["int64", [-1, 3]], "known_user": ["bool", [-1]], "scores": ["float32", [-1, 3]]},
    }
    assert signatures["score"] == {
        "inputs": {"item_id": ["int64", [-1]], "user_id": ["int64", [-1]]},
        "outputs": {"known_item": ["bool", [-1]], "known_user": ["bool", [-1]], "score": ["float32", [-1]]},
    }
    assert signatures["metadata"]["inputs"] == {"unused": ["int64", []]}
    assert exported["probe"]["results"][1]["signatures"]["serving_default"]["outputs"]["item_ids"] == ["int64", [-1, 5]]


def test_metadata_signature_reports_the_run(exported):
    outputs = _outputs(exported, 0, 4)
    assert {k: outputs[k] for k in ("backbone", "dataset", "mrdib", "run_dir", "best_epoch", "top_k",
                                   "n_users", "n_items", "note")} == {
        "backbone": "vbpr", "dataset": "hand", "mrdib": True, "run_dir": "/runs/x", "best_epoch": 7,
        "top_k": 3, "n_users": 4, "n_items": 5, "note": "hand-made"}
    assert (outputs["alpha_kl"], outputs["alpha_mi"], outputs["alpha_unique"]) == (0.005, 0.05, 0.005)
    assert outputs["metric_names"] == ["recall@5", "recall@20"]
    assert outputs["valid_metrics"] == [0.125, 0.25]
    assert outputs["test_metrics"][1] == 0.5 and np.isnan(outputs["test_metrics"][0])
    assert outputs["export_time"].endswith("Z") and len(outputs["export_time"]) == 20
    on_disk = json.loads((Path(exported["built"]["exports"]["hand"][0]) / "assets.extra" / "metadata.json").read_text())
    assert on_disk["backbone"] == "vbpr" and on_disk["valid_metrics"] == {"recall@20": 0.25, "recall@5": 0.125}


def test_plain_tensorflow_knows_every_op_and_loads_no_project_code(exported):
    probe = exported["probe"]
    assert probe["foreign_modules"] == []
    for result in probe["results"]:
        assert result["unregistered_ops"] == []
        assert {"TopKV2", "MatMul", "LowerBound"} <= set(result["ops"])


def test_versions_count_up_and_a_leftover_temporary_folder_is_not_a_version(exported):
    root = exported["root"] / "hand"
    assert exported["built"]["exports"]["hand"] == [str(root / "1"), str(root / "2"), str(root / "3")]
    assert sorted(p.name for p in root.iterdir()) == [".tmp-export-crashed", "1", "2", "3"]
    assert all((root / v / "saved_model.pb").is_file() for v in ("1", "2", "3"))


def test_bad_inputs_to_the_builder_are_clear_value_errors(exported):
    errors = exported["built"]["errors"]
    assert "not all digits" in errors["bad_name"]
    assert "train covers 3 users x 5 items; the embeddings 2 x 5" in errors["train_mismatch"]


def test_a_grpc_predict_request_maps_onto_serving_default(exported):
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "hand"
    request.model_spec.signature_name = "serving_default"
    request.inputs["user_id"].CopyFrom(tf.make_tensor_proto([2, 0], dtype=tf.int64))
    model = tf.saved_model.load(exported["built"]["exports"]["hand"][0])
    signature = model.signatures[request.model_spec.signature_name]
    specs = signature.structured_input_signature[1]
    assert {name: spec.dtype for name, spec in specs.items()} == {
        name: tf.dtypes.as_dtype(proto.dtype) for name, proto in request.inputs.items()}
    outputs = signature(**{name: tf.constant(tf.make_ndarray(p)) for name, p in request.inputs.items()})
    response = {name: tf.make_tensor_proto(value.numpy()) for name, value in outputs.items()}
    assert {name: tf.dtypes.as_dtype(p.dtype).name for name, p in response.items()} == {
        "item_ids": "int64", "scores": "float32", "known_user": "bool"}
    assert tf.make_ndarray(response["item_ids"]).tolist() == [HAND_TOP3[2][0], HAND_TOP3[0][0]]
