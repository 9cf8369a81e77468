"""Small /proc/sys and /sys number files: table tests of parsers/sysctl.py."""

import pytest

from hostdiag.parsers.sysctl import (
    TAINT_FLAGS,
    parse_decimal,
    parse_file_nr,
    parse_single_int,
    taint_letters,
)


@pytest.mark.parametrize("data, expected", [
    (b"4160\t0\t9223372036854775807\n", ({"allocated": 4160, "unused": 0, "max": 9223372036854775807}, 0)),
    (b"", (None, 1)),
    (b"4160\t0\n", (None, 1)),                    # truncated
    (b"4160\t0\t9\t1\n", (None, 1)),              # extra column
    (b"4160\tx\t9\n", (None, 1)),                 # non-numeric
    (b"4160 0 " + b"9" * 100000 + b"\n", (None, 1)),
])
def test_file_nr_table(data, expected):
    assert parse_file_nr(data) == expected


@pytest.mark.parametrize("data, expected", [
    (b"4194304\n", (4194304, 0)), (b"-1\n", (-1, 0)), (b"0", (0, 0)),
    (b"", (None, 1)), (b"\n", (None, 1)), (b"12 13\n", (None, 1)), (b"twelve\n", (None, 1)),
])
def test_single_int_table(data, expected):
    assert parse_single_int(data) == expected


@pytest.mark.parametrize("data, expected", [
    (b"1500\n", (1500, 0)), (b" -3 \n", (-3, 0)), (b"0", (0, 0)),
    (b"", (None, 1)), (b"-", (None, 1)), (b"+3\n", (None, 1)), (b"1 2\n", (None, 1)),
    (b"1.5\n", (None, 1)), (b"1" * 20, (int("1" * 20), 0)), (b"1" * 21, (None, 1)),
])
def test_decimal_table(data, expected):
    assert parse_decimal(data) == expected


@pytest.mark.parametrize("value, letters", [
    (0, ""), (1, "P"), (1 << 12 | 1 << 9, "WO"), ((1 << len(TAINT_FLAGS)) - 1, TAINT_FLAGS),
    (1 << 40, ""),
])
def test_taint_letters(value, letters):
    assert taint_letters(value) == letters
