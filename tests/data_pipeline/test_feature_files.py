import numpy as np
import pytest

from data_pipeline.errors import DataValidationError
from data_pipeline.feature_files import find_feature_files, read_feature_file


def save(tmp_path, name, array):
    path = tmp_path / name
    np.save(path, array)
    return path


def test_finds_every_modality_sorted_by_name(tmp_path):
    for name in ("text_feat.npy", "audio_feat.npy", "v_feat.npy"):
        save(tmp_path, name, np.zeros((2, 2)))
    (tmp_path / "notes.npy").write_bytes(b"")
    assert list(find_feature_files(tmp_path)) == ["audio", "text", "v"]


def test_feature_file_without_modality_name_is_rejected(tmp_path):
    save(tmp_path, "_feat.npy", np.zeros((2, 2)))
    with pytest.raises(DataValidationError, match="needs a modality name"):
        find_feature_files(tmp_path)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_dtypes_become_float32_with_the_same_values(tmp_path, dtype):
    values = np.array([[0.5, -2.0], [1.25, 3.0], [0.0, 7.5]], dtype=dtype)
    features = read_feature_file(save(tmp_path, "image_feat.npy", values), n_items=3)
    assert features.dtype == np.float32
    np.testing.assert_array_equal(features, values.astype(np.float64))


def test_row_count_other_than_n_items_is_named(tmp_path):
    path = save(tmp_path, "image_feat.npy", np.zeros((4, 2), np.float32))
    with pytest.raises(DataValidationError, match=r"image_feat\.npy: 4 rows, expected 5"):
        read_feature_file(path, n_items=5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_value_names_the_first_bad_row(tmp_path, bad):
    values = np.ones((5, 3), np.float32)
    values[3, 1] = bad
    values[4, 0] = bad
    with pytest.raises(
        DataValidationError,
        match=r"text_feat\.npy, row 3 \(itemID 3, 0-based\): NaN or infinite .*2 such rows",
    ):
        read_feature_file(save(tmp_path, "text_feat.npy", values), n_items=5)


def test_float64_overflowing_float32_counts_as_infinite(tmp_path):
    values = np.ones((2, 2))
    values[1, 1] = 1e300
    with pytest.raises(DataValidationError, match="row 1"):
        read_feature_file(save(tmp_path, "image_feat.npy", values), n_items=2)


@pytest.mark.parametrize("array", [np.zeros((3, 2), np.int64), np.zeros(3, np.float32)])
def test_non_float_or_non_matrix_is_rejected(tmp_path, array):
    with pytest.raises(DataValidationError, match="expected a 2-D float16/32/64 array"):
        read_feature_file(save(tmp_path, "image_feat.npy", array), n_items=3)


def test_unreadable_file_is_named(tmp_path):
    path = tmp_path / "image_feat.npy"
    path.write_bytes(b"not numpy")
    with pytest.raises(DataValidationError, match=r"image_feat\.npy: not a readable \.npy"):
        read_feature_file(path, n_items=3)

