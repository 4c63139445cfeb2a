import gzip
import time
from pathlib import Path

import numpy as np
import pytest

from data_pipeline.errors import DataValidationError
from data_pipeline.inter_file import read_inter_file

# ../shared/data beside the project root, as on every developer machine and in CI.
SPORTS = Path(__file__).resolve().parents[3] / "shared" / "data" / "sports" / "sports.inter"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "toy.inter"
    path.write_bytes(text.encode())
    return path


def test_three_columns_read_with_line_numbers(tmp_path):
    table = read_inter_file(write(tmp_path, "userID\titemID\tx_label\n0\t5\t0\n12\t0\t2\n3\t44\t1\n"))
    np.testing.assert_array_equal(table.users, [0, 12, 3])
    np.testing.assert_array_equal(table.items, [5, 0, 44])
    np.testing.assert_array_equal(table.labels, [0, 2, 1])
    np.testing.assert_array_equal(table.lines, [2, 3, 4])


def test_five_column_mmrec_form_in_any_order_reads_the_same(tmp_path):
    three = read_inter_file(write(tmp_path, "userID\titemID\tx_label\n0\t5\t0\n12\t0\t2\n"))
    five = read_inter_file(
        write(
            tmp_path,
            "itemID\trating\tuserID\ttimestamp\tx_label\n5\t4.0\t0\t1370000000\t0\n0\t5.0\t12\t1380000000\t2\n",
        )
    )
    for column in ("users", "items", "labels", "lines"):
        np.testing.assert_array_equal(getattr(three, column), getattr(five, column))


def test_crlf_blank_lines_and_missing_final_newline(tmp_path):
    table = read_inter_file(write(tmp_path, "userID\titemID\tx_label\r\n1\t2\t0\r\n\r\n3\t4\t1"))
    np.testing.assert_array_equal(table.users, [1, 3])
    np.testing.assert_array_equal(table.lines, [2, 4])  # the blank line 3 is skipped, not renumbered


def test_gzipped_file_reads_like_the_plain_one(tmp_path):
    text = "userID\titemID\tx_label\n0\t5\t0\n12\t0\t2\n"
    plain = read_inter_file(write(tmp_path, text))
    packed = tmp_path / "toy.inter.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    table = read_inter_file(packed)
    assert table.path == packed
    for column in ("users", "items", "labels", "lines"):
        np.testing.assert_array_equal(getattr(table, column), getattr(plain, column))


def test_gzipped_file_errors_name_decompressed_lines(tmp_path):
    packed = tmp_path / "toy.inter.gz"
    packed.write_bytes(gzip.compress(b"userID\titemID\tx_label\n0\t5\t0\n1\tx\t0\n"))
    with pytest.raises(DataValidationError, match=r"toy\.inter\.gz, line 3, column 'itemID': got 'x'"):
        read_inter_file(packed)


@pytest.mark.parametrize("cut", [0, 10, -9])
def test_truncated_or_non_gzip_file_is_named(tmp_path, cut):
    packed = tmp_path / "toy.inter.gz"
    data = gzip.compress(b"userID\titemID\tx_label\n" + b"0\t1\t0\n" * 50)
    packed.write_bytes(data[:cut] if cut else b"userID\titemID\tx_label\n")  # cut 0: plain text named .gz
    with pytest.raises(DataValidationError, match=r"toy\.inter\.gz: not a complete gzip file .*expected"):
        read_inter_file(packed)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataValidationError, match=r"toy\.inter: interaction file not found"):
        read_inter_file(tmp_path / "toy.inter")


def test_empty_file(tmp_path):
    with pytest.raises(DataValidationError, match="empty"):
        read_inter_file(write(tmp_path, "\n"))


def test_missing_column_is_named(tmp_path):
    with pytest.raises(DataValidationError, match=r"toy\.inter, line 1: the header has no column 'x_label'"):
        read_inter_file(write(tmp_path, "userID\titemID\trating\n0\t1\t5\n"))


def test_row_with_wrong_field_count_names_its_line(tmp_path):
    with pytest.raises(DataValidationError, match=r"line 3: 2 tab-separated fields, expected 3"):
        read_inter_file(write(tmp_path, "userID\titemID\tx_label\n0\t1\t0\n0\t1\n"))


@pytest.mark.parametrize("value", ["1.5", "x", "", "1e3", "12345678901234567890"])
def test_non_integer_id_names_line_and_column(tmp_path, value):
    text = f"userID\titemID\tx_label\n0\t1\t0\n1\t{value}\t0\n"
    with pytest.raises(
        DataValidationError, match=r"line 3, column 'itemID': got .*expected a non-negative integer ID"
    ):
        read_inter_file(write(tmp_path, text))


def test_negative_id_is_reported_as_negative(tmp_path):
    with pytest.raises(DataValidationError, match=r"line 2, column 'userID': got '-3', a negative number"):
        read_inter_file(write(tmp_path, "userID\titemID\tx_label\n-3\t1\t0\n"))


@pytest.mark.parametrize("label", ["3", "-1", "a"])
def test_label_outside_0_1_2_names_line(tmp_path, label):
    with pytest.raises(
        DataValidationError,
        match=r"line 4, column 'x_label': got .*expected 0 \(train\), 1 \(valid\) or 2 \(test\)",
    ):
        read_inter_file(write(tmp_path, f"userID\titemID\tx_label\n0\t1\t0\n0\t2\t1\n0\t3\t{label}\n"))


@pytest.mark.skipif(not SPORTS.is_file(), reason="needs ../shared/data/sports")
def test_sports_reads_fast_and_matches_a_plain_parse():
    start = time.perf_counter()
    table = read_inter_file(SPORTS)
    elapsed = time.perf_counter() - start
    expected = np.array(SPORTS.read_bytes().split()[3:], dtype=np.int64).reshape(-1, 3)
    np.testing.assert_array_equal(np.column_stack([table.users, table.items, table.labels]), expected)
    assert elapsed < 2.0
