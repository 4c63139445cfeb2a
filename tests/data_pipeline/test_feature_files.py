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



def test_zero_byte_file_is_named_as_empty(tmp_path):
    path = tmp_path / "image_feat.npy"
    path.write_bytes(b"")
    with pytest.raises(DataValidationError, match=r"image_feat\.npy: the file is empty \(0 bytes\)"):
        read_feature_file(path, n_items=3)


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_file_names_its_size_and_the_size_its_header_declares(tmp_path, keep):
    path = save(tmp_path, "text_feat.npy", np.ones((10, 20), np.float32))
    full = path.stat().st_size  # header + 10 * 20 * 4 bytes
    path.write_bytes(path.read_bytes()[: int(full * keep)])
    with pytest.raises(DataValidationError) as error:
        read_feature_file(path, n_items=10)
    assert str(error.value) == (
        f"{path}: truncated: {int(full * keep)} bytes, but its header declares a float32 array of shape "
        f"(10, 20), which takes {full} bytes; expected the complete file (copy it again)."
    )


def test_cut_inside_the_header_is_unreadable(tmp_path):
    path = save(tmp_path, "image_feat.npy", np.ones((2, 2), np.float32))
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataValidationError, match=r"image_feat\.npy: not a readable \.npy file \(EOF"):
        read_feature_file(path, n_items=2)


def _header_only(path, shape, data=b""):
    """A .npy file whose header declares `shape` (float32) followed by `data`: nothing else."""
    with path.open("wb") as stream:
        np.lib.format.write_array_header_1_0(
            stream, {"descr": "<f4", "fortran_order": False, "shape": shape}
        )
        stream.write(data)
    return path


def test_shape_and_size_are_checked_from_the_header_before_any_data_is_read(tmp_path, monkeypatch):
    def no_load(*args, **kwargs):
        raise AssertionError("np.load called")

    monkeypatch.setattr(np, "load", no_load)
    huge = _header_only(tmp_path / "image_feat.npy", (10**12, 4096), b"\0" * 100)  # 16 TB declared
    with pytest.raises(DataValidationError, match=r"1000000000000 rows, expected 7050"):
        read_feature_file(huge, n_items=7050)
    with pytest.raises(DataValidationError, match=r"truncated: .* which takes 16384000000000\d{3} bytes"):
        read_feature_file(huge, n_items=10**12)
