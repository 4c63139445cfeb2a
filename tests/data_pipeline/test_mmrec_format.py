import numpy as np
import pytest

from data_pipeline.errors import DataValidationError
from data_pipeline.mmrec_format import check_features_present, check_inter_present, read_mmrec_folder


def test_toy_folder_splits_counts_and_cold_start_drop(make_folder):
    source = read_mmrec_folder(make_folder(), "toy")
    # Hand-checked from TOY_ROWS: user 3 has only a valid and a test row.
    assert (source.n_users, source.n_items) == (4, 5)
    assert source.source_rows == {"train": 7, "valid": 4, "test": 4}
    assert source.dropped_cold_start == {"users": 1, "valid_rows": 1, "test_rows": 1}
    np.testing.assert_array_equal(source.splits["train"][0], [0, 0, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(source.splits["train"][1], [0, 1, 1, 4, 2, 3, 4])
    np.testing.assert_array_equal(source.splits["valid"][0], [0, 1, 2])
    np.testing.assert_array_equal(source.splits["test"][1], [3, 2, 1])
    assert list(source.features) == ["image", "text"]
    assert source.features["image"].shape == (5, 6)


def test_ids_counts_come_from_all_rows_including_dropped_ones(make_folder):
    rows = [(0, 0, 0), (0, 1, 1), (5, 7, 2)]  # user 5 and item 7 only in a dropped test row
    source = read_mmrec_folder(make_folder(rows=rows, features={}), "toy")
    assert (source.n_users, source.n_items) == (6, 8)
    assert source.splits["test"][0].size == 0


def test_no_train_rows(make_folder):
    folder = make_folder(rows=[(0, 0, 1), (0, 1, 2)], features={})
    with pytest.raises(DataValidationError, match=r"toy\.inter: no train rows \(x_label 0\)"):
        read_mmrec_folder(folder, "toy")


def test_duplicate_pair_names_both_lines(make_folder):
    folder = make_folder(rows=[(0, 0, 0), (1, 1, 0), (0, 0, 2)], features={})
    with pytest.raises(
        DataValidationError, match=r"lines 2 and 4: the pair \(userID 0, itemID 0\) appears twice"
    ):
        read_mmrec_folder(folder, "toy")


def test_feature_rows_must_match_n_items(make_folder):
    folder = make_folder(features={"image": np.zeros((4, 2))})  # toy has 5 items
    with pytest.raises(DataValidationError, match=r"image_feat\.npy: 4 rows, expected 5"):
        read_mmrec_folder(folder, "toy")


def test_nan_in_features_names_the_row(make_folder):
    image = np.zeros((5, 2))
    image[2, 0] = np.nan
    with pytest.raises(DataValidationError, match=r"image_feat\.npy, row 2"):
        read_mmrec_folder(make_folder(features={"image": image}), "toy")


def test_missing_inter_file_lists_the_inter_files_present(make_folder):
    folder = make_folder(name="other", features={})
    with pytest.raises(
        DataValidationError, match=r"toy\.inter: interaction file not found .*\['other\.inter'\]"
    ):
        check_inter_present(folder, "toy")


def test_features_required_but_absent(make_folder):
    folder = make_folder(features={})
    with pytest.raises(
        DataValidationError, match=r"no modality feature files.*image_feat\.npy.*text_feat\.npy"
    ):
        check_features_present(folder)
    check_features_present(make_folder(name="with"))  # has image and text: no error
