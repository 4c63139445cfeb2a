import gzip

import numpy as np
import pytest

from data_pipeline.errors import DataValidationError
from data_pipeline.mmrec_format import (
    check_features_present,
    check_inter_present,
    read_mmrec_dataset,
    source_files,
)
from data_pipeline.registry import resolve_dataset


def read_mmrec_folder(folder, name="toy"):
    return read_mmrec_dataset(resolve_dataset(name, folder))


def test_toy_folder_splits_counts_and_cold_start_drop(make_folder):
    source = read_mmrec_folder(make_folder())
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
    rows = [(u, i, 0) for u in range(5) for i in range(2)]  # 10 rows: every ID below 10 is plausible
    rows += [(5, 7, 2)]  # user 5 and item 7 only in a dropped test row
    source = read_mmrec_folder(make_folder(rows=rows, features={}))
    assert (source.n_users, source.n_items) == (6, 8)
    assert source.splits["test"][0].size == 0


@pytest.mark.parametrize("column, row", [("userID", (10**12, 0, 0)), ("itemID", (1, 4, 2))])
def test_an_id_not_below_the_row_count_is_named_before_anything_is_sized_by_it(make_folder, column, row):
    rows = [(0, 0, 0), (0, 1, 1), (1, 1, 0), row]  # 4 rows: IDs must be below 4
    folder = make_folder(rows=rows, features={})
    value = row[0] if column == "userID" else row[1]
    with pytest.raises(DataValidationError) as error:
        read_mmrec_folder(folder)
    assert str(error.value).startswith(
        f"{folder / 'toy.inter'}, line 5, column '{column}': got {value}, expected an ID below 4, "
        "the file's number of data rows"
    )


def test_no_train_rows(make_folder):
    folder = make_folder(rows=[(0, 0, 1), (0, 1, 2)], features={})
    with pytest.raises(DataValidationError, match=r"toy\.inter: no train rows \(x_label 0\)"):
        read_mmrec_folder(folder)


def test_duplicate_pair_names_both_lines(make_folder):
    folder = make_folder(rows=[(0, 0, 0), (1, 1, 0), (0, 0, 2)], features={})
    with pytest.raises(
        DataValidationError, match=r"lines 2 and 4: the pair \(userID 0, itemID 0\) appears twice"
    ):
        read_mmrec_folder(folder)


def test_feature_rows_must_match_n_items(make_folder):
    folder = make_folder(features={"image": np.zeros((4, 2))})  # toy has 5 items
    with pytest.raises(DataValidationError, match=r"image_feat\.npy: 4 rows, expected 5"):
        read_mmrec_folder(folder)


def test_nan_in_features_names_the_row(make_folder):
    image = np.zeros((5, 2))
    image[2, 0] = np.nan
    with pytest.raises(DataValidationError, match=r"image_feat\.npy, row 2"):
        read_mmrec_folder(make_folder(features={"image": image}))


def test_missing_inter_file_lists_the_inter_files_present(make_folder):
    folder = make_folder(name="other", features={})
    (folder / "third.inter.gz").write_bytes(b"")
    with pytest.raises(
        DataValidationError,
        match=r"toy\.inter: interaction file not found .*\['other\.inter', 'third\.inter\.gz'\]",
    ):
        check_inter_present(resolve_dataset("toy", folder))


def test_features_required_but_absent(make_folder):
    folder = make_folder(features={})
    with pytest.raises(DataValidationError, match=r"'toy': no feature files.*image_feat\.npy.*text_feat\.npy"):
        check_features_present(resolve_dataset("toy", folder))
    check_features_present(resolve_dataset("with", make_folder(name="with")))  # has image and text


def test_gzipped_folder_reads_the_same_as_the_plain_one(make_folder):
    plain = read_mmrec_folder(make_folder())
    folder = make_folder(name="packed")
    (folder / "packed.inter.gz").write_bytes(gzip.compress((folder / "packed.inter").read_bytes()))
    (folder / "packed.inter").unlink()
    location = resolve_dataset(data_dir=folder)
    assert source_files(location)[0] == folder / "packed.inter.gz"
    packed = read_mmrec_dataset(location)
    assert (packed.n_users, packed.n_items) == (plain.n_users, plain.n_items)
    assert packed.source_rows == plain.source_rows
    for split in plain.splits:
        np.testing.assert_array_equal(packed.splits[split], plain.splits[split])
