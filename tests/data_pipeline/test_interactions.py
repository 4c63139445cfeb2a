import numpy as np
import pytest

from data_pipeline.interactions import UserItems


def test_from_pairs_builds_sorted_csr_by_hand():
    ui = UserItems.from_pairs([2, 0, 2, 0, 2], [1, 3, 0, 1, 4], n_users=4, n_items=5)
    np.testing.assert_array_equal(ui.indptr, [0, 2, 2, 5, 5])
    np.testing.assert_array_equal(ui.indices, [1, 3, 0, 1, 4])
    assert ui.indptr.dtype == ui.indices.dtype == np.int64
    assert (ui.n_users, ui.n_items, ui.nnz) == (4, 5, 5)


def test_repeated_pairs_are_kept_once():
    ui = UserItems.from_pairs([1, 1, 1], [2, 2, 0], n_users=2, n_items=3)
    np.testing.assert_array_equal(ui.items_of(1), [0, 2])
    assert ui.nnz == 2


def test_items_of_users_with_items_and_to_pairs():
    ui = UserItems.from_pairs([3, 1, 3], [0, 2, 1], n_users=5, n_items=3)
    np.testing.assert_array_equal(ui.items_of(3), [0, 1])
    assert ui.items_of(0).size == 0
    np.testing.assert_array_equal(ui.users_with_items(), [1, 3])
    users, items = ui.to_pairs()
    np.testing.assert_array_equal(users, [1, 3, 3])
    np.testing.assert_array_equal(items, [2, 0, 1])


def test_empty_input_gives_empty_users():
    ui = UserItems.from_pairs([], [], n_users=3, n_items=4)
    np.testing.assert_array_equal(ui.indptr, [0, 0, 0, 0])
    assert ui.users_with_items().size == 0


@pytest.mark.parametrize(
    ("users", "items", "match"),
    [([0, 3], [0, 0], "user ids"), ([0], [-1], "item ids"), ([0, 1], [0], "differ")],
)
def test_out_of_range_or_ragged_input_is_rejected(users, items, match):
    with pytest.raises(ValueError, match=match):
        UserItems.from_pairs(users, items, n_users=3, n_items=2)
