"""Tests for mrdib_tf.metrics: a plain-numpy reference, a hand-worked example, masking and batching."""

import numpy as np
import pytest

from data_pipeline.interactions import UserItems
from mrdib_tf.metrics import DEFAULT_KS, METRIC_NAMES, FullRankingEvaluator, evaluate_scores


def reference_metrics(scores, train_items, truth_items, ks):
    """MMRec's metrics the slow, obvious way: one user at a time, a stable argsort, explicit sums."""
    totals = {f"{name}@{k}": 0.0 for name in METRIC_NAMES for k in ks}
    evaluated = 0
    for user, row in enumerate(np.asarray(scores, dtype=np.float64)):
        truth = set(truth_items[user])
        if not truth:
            continue
        evaluated += 1
        masked = row.copy()
        masked[list(train_items[user])] = -np.inf
        order = np.argsort(-masked, kind="stable")  # ties: lower item id first, like tf.math.top_k
        for k in ks:
            relevant = [item in truth for item in order[:k]]
            hits = sum(relevant)
            dcg = sum(1.0 / np.log2(rank + 1) for rank in range(1, k + 1) if relevant[rank - 1])
            idcg = sum(1.0 / np.log2(rank + 1) for rank in range(1, min(len(truth), k) + 1))
            precisions_at_hits = [sum(relevant[:j]) / j for j in range(1, k + 1) if relevant[j - 1]]
            totals[f"recall@{k}"] += hits / len(truth)
            totals[f"ndcg@{k}"] += dcg / idcg
            totals[f"precision@{k}"] += hits / k
            totals[f"map@{k}"] += sum(precisions_at_hits) / min(len(truth), k)
    return {key: value / evaluated for key, value in totals.items()}


def user_items(lists, n_items):
    """The real `UserItems` from one list of item ids per user."""
    users = np.repeat(np.arange(len(lists)), [len(items) for items in lists])
    items = np.concatenate([np.asarray(items, dtype=np.int64) for items in lists])
    return UserItems.from_pairs(users, items, n_users=len(lists), n_items=n_items)


def random_split(rng, n_users, n_items):
    """Disjoint train and truth lists with awkward sizes: empty truth, truth > max(K), many train items."""
    train, truth = [], []
    for user in range(n_users):
        items = rng.permutation(n_items)
        n_train = 70 if user % 5 == 0 else int(rng.integers(0, 12))
        n_truth = 0 if user % 7 == 3 else 60 if user % 6 == 1 else int(rng.integers(1, 9))
        train.append(sorted(items[:n_train].tolist()))
        truth.append(sorted(items[n_train : n_train + n_truth].tolist()))
    return train, truth


@pytest.fixture(scope="module")
def problem():
    """37 users x 140 items: embeddings, their scores and an awkward train/truth split.

    Entries are multiples of 1/8 plus a last column (users 1, item i: i / 2**14) that breaks every tie
    without reordering anything else; all dot products are exact in float32, so TF and numpy agree.
    """
    rng = np.random.default_rng(7)
    n_users, n_items = 37, 140
    users = np.hstack([np.round(rng.normal(size=(n_users, 8)) * 8) / 8, np.ones((n_users, 1))])
    items = np.hstack([np.round(rng.normal(size=(n_items, 8)) * 8) / 8, np.arange(n_items)[:, None] / 2**14])
    users, items = users.astype(np.float32), items.astype(np.float32)
    train, truth = random_split(rng, n_users, n_items)
    return users, items, users.astype(np.float64) @ items.T.astype(np.float64), train, truth


def test_evaluate_scores_matches_numpy_reference_on_random_data():
    rng = np.random.default_rng(0)
    n_users, n_items = 41, 150
    scores = rng.normal(size=(n_users, n_items))
    train, truth = random_split(rng, n_users, n_items)
    assert any(not items for items in truth) and max(len(items) for items in truth) > max(DEFAULT_KS)

    got = evaluate_scores(scores, train, truth)

    expected = reference_metrics(scores, train, truth, DEFAULT_KS)
    assert got.keys() == expected.keys()
    np.testing.assert_allclose([got[key] for key in expected], list(expected.values()), rtol=1e-12)


def test_hand_worked_example():
    # 3 users x 6 items, K in {1, 2, 3}; d = 1/log2(3) ~= 0.630930 is the discount at rank 2.
    scores = [
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],  # train {0}: ranking 1, 2, 3, 4, 5 -> hits at ranks 2 and 5
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # train {4}: ranking 5, 3, 2, 1, 0 -> hits at ranks 1 and 2
        [0.5, 0.5, 0.5, 0.5, 0.5, 0.5],  # no truth: skipped
    ]
    train = [[0], [4], [1]]
    truth = [[2, 5], [0, 3, 5], []]
    d = 1 / np.log2(3)
    # User 0 (|truth| = 2):
    #   @1: no hit                    -> recall 0,   ndcg 0,                precision 0,   map 0
    #   @2: hit at 2                  -> recall 1/2, ndcg d / (1 + d),      precision 1/2, map (1/2) / 2
    #   @3: same hit, IDCG still 2 pos -> recall 1/2, ndcg d / (1 + d),     precision 1/3, map (1/2) / 2
    # User 1 (|truth| = 3, more than K for K < 3):
    #   @1: hit at 1 -> recall 1/3, ndcg 1 / 1,                       precision 1,   map 1 / 1
    #   @2: hits 1,2 -> recall 2/3, ndcg (1 + d) / (1 + d),           precision 1,   map (1 + 1) / 2
    #   @3: hits 1,2 -> recall 2/3, ndcg (1 + d) / (1 + d + 1/2),     precision 2/3, map (1 + 1) / 3
    expected = {
        "recall@1": (0 + 1 / 3) / 2,  # 0.166667
        "recall@2": (1 / 2 + 2 / 3) / 2,  # 0.583333
        "recall@3": (1 / 2 + 2 / 3) / 2,  # 0.583333
        "ndcg@1": (0 + 1) / 2,  # 0.5
        "ndcg@2": (d / (1 + d) + 1) / 2,  # (0.386853 + 1) / 2 = 0.693426
        "ndcg@3": (d / (1 + d) + (1 + d) / (1.5 + d)) / 2,  # (0.386853 + 0.765361) / 2 = 0.576107
        "precision@1": (0 + 1) / 2,  # 0.5
        "precision@2": (1 / 2 + 1) / 2,  # 0.75
        "precision@3": (1 / 3 + 2 / 3) / 2,  # 0.5
        "map@1": (0 + 1) / 2,  # 0.5
        "map@2": (1 / 4 + 1) / 2,  # 0.625
        "map@3": (1 / 4 + 2 / 3) / 2,  # 0.458333
    }

    got = evaluate_scores(np.array(scores), train, truth, ks=(1, 2, 3))

    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key


def test_cutoffs_beyond_a_small_catalogue_rank_it_all_and_count_missing_positions_as_misses():
    # 3 items, K up to 5. User 0: item 1 is a training item (masked), truth {0}; ranked 2, 0, (1).
    # User 1: nothing masked, truth {1, 2}; ranked 0, 1, 2.
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1]])
    d = 1 / np.log2(3)
    # @3 = @5 except precision, whose denominator stays K (positions 4 and 5 hold no item, no hit):
    #   user 0: hit at 2 -> recall 1, ndcg d / 1,               precision 1/3 | 1/5, map (1/2) / 1
    #   user 1: hits 2,3 -> recall 1, ndcg (d + 1/2) / (1 + d), precision 2/3 | 2/5, map (1/2 + 2/3) / 2
    whole_list = {
        "recall": 1.0,
        "ndcg": (d + (d + 0.5) / (1 + d)) / 2,  # (0.630930 + 0.693426) / 2 = 0.662178
        "map": (0.5 + (0.5 + 2 / 3) / 2) / 2,  # 0.541667
    }
    expected = {f"{name}@{k}": value for name, value in whole_list.items() for k in (3, 5)}
    expected.update({"precision@3": (1 / 3 + 2 / 3) / 2, "precision@5": (1 / 5 + 2 / 5) / 2})
    expected.update({f"{name}@1": 0.0 for name in METRIC_NAMES})  # both rank a non-truth item first

    got = evaluate_scores(scores, [[1], []], [[0], [1, 2]], ks=(1, 3, 5))

    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key


def test_default_cutoffs_evaluate_a_catalogue_smaller_than_the_largest():
    train, truth = user_items([[0], [1, 2]], 7), user_items([[3, 4], [0]], 7)
    evaluator = FullRankingEvaluator(train, truth)  # K = 5, 10, 20, 50 over 7 items
    users = np.array([[1.0], [1.0]], np.float32)
    items = np.arange(7, 0, -1, dtype=np.float32)[:, None]  # item 0 scores highest
    got = evaluator.evaluate(users, items)
    # User 0 ranks 1, 2, 3, 4, 5, 6, (0): hits at 3 and 4. User 1 ranks 0, 3, 4, 5, 6, (1, 2): hit at 1.
    assert got["recall@5"] == got["recall@50"] == 1.0
    assert got["precision@10"] == pytest.approx((2 / 10 + 1 / 10) / 2)
    assert got["precision@50"] == pytest.approx((2 / 50 + 1 / 50) / 2)
    assert got["map@50"] == got["map@5"] == pytest.approx(((1 / 3 + 2 / 4) / 2 + 1) / 2)


def test_only_train_items_are_masked():
    # Item 3 is a training item and scores highest; item 1 (ground truth) is next.
    scores = np.array([[0.2, 0.9, 0.1, 1.0, 0.0]])
    metrics = evaluate_scores(scores, [[3]], [[1]], ks=(1,))
    assert metrics["recall@1"] == 1.0

    # The evaluator built for testing masks train only: a validation item scoring highest is ranked first.
    train, valid, test = user_items([[3]], 5), user_items([[0]], 5), user_items([[1]], 5)
    evaluator = FullRankingEvaluator(train, test, ks=(1,))
    assert valid.items_of(0).tolist() == [0]
    users = np.array([[1.0, 0.0]], np.float32)
    items = np.array([[3, 0], [2, 0], [1, 0], [9, 0], [0, 0]], np.float32)  # scores 3, 2, 1, 9, 0
    assert evaluator.top_k(users, items, 5).tolist() == [[0, 1, 2, 4, 3]]  # train item 3 last despite 9
    assert evaluator.evaluate(users, items)["recall@1"] == 0.0  # item 0 (validation) took rank 1


def test_masked_items_never_outrank_unmasked(problem):
    users, items, _, train, truth = problem
    evaluator = FullRankingEvaluator(user_items(train, len(items)), user_items(truth, len(items)))

    ranked = evaluator.top_k(users, items, len(items) - max(len(row) for row in train))

    for user, row in enumerate(ranked):
        assert not set(row.tolist()) & set(train[user]), user


@pytest.mark.parametrize("batch_users", [2, 5, 36, 64])
def test_batched_evaluator_equals_evaluate_scores(problem, batch_users):
    users, items, scores, train, truth = problem
    assert len(users) % batch_users != 0
    evaluator = FullRankingEvaluator(
        user_items(train, len(items)), user_items(truth, len(items)), batch_users=batch_users
    )

    got = evaluator.evaluate(users, items)

    expected = evaluate_scores(scores, train, truth)
    assert got == pytest.approx(expected, rel=1e-12)
    assert got == pytest.approx(reference_metrics(scores, train, truth, DEFAULT_KS), rel=1e-12)


def test_top_k_equals_numpy_argsort(problem):
    users, items, scores, train, truth = problem
    assert all(np.unique(row).size == row.size for row in scores), "the reference needs distinct scores"
    train_csr, truth_csr = user_items(train, len(items)), user_items(truth, len(items))
    evaluator = FullRankingEvaluator(train_csr, truth_csr, batch_users=10)

    got = evaluator.top_k(users, items, 12)

    masked = scores.copy()
    for user, row in enumerate(train):
        masked[user, row] = -np.inf
    expected = np.argsort(-masked, axis=1)[:, :12]
    assert got.dtype == np.int64 and got.shape == (len(users), 12)
    np.testing.assert_array_equal(got, expected)


def test_invalid_arguments_are_named():
    with pytest.raises(ValueError, match="truth_items has 1 users but scores has 2 rows"):
        evaluate_scores(np.zeros((2, 3)), [[], []], [[1]], ks=(1,))
    with pytest.raises(ValueError, match="train_items"):
        evaluate_scores(np.zeros((1, 3)), [[3]], [[1]], ks=(1,))
    with pytest.raises(ValueError, match=r"ks must be non-empty cutoffs >= 1; got \(0, 2\)"):
        evaluate_scores(np.zeros((1, 3)), [[]], [[1]], ks=(0, 2))
    with pytest.raises(ValueError, match="nobody to evaluate"):
        evaluate_scores(np.zeros((1, 3)), [[]], [[]], ks=(1,))
    evaluator = FullRankingEvaluator(user_items([[0]], 3), user_items([[1]], 3), ks=(1,))
    with pytest.raises(ValueError, match="expected 1 user and 3 item embeddings"):
        evaluator.evaluate(np.zeros((1, 4), np.float32), np.zeros((4, 4), np.float32))
