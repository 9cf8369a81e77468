"""/proc/pressure/*: table test of parsers/pressure.py (the exact kernel form and the general path)."""

import pytest

from hostdiag.parsers.pressure import parse_pressure

SOME = b"some avg10=1.50 avg60=0.75 avg300=0.10 total=123456\n"
FULL = b"full avg10=0.50 avg60=0.25 avg300=0.00 total=6543\n"
SOME_D = {"avg10": 1.5, "avg60": 0.75, "avg300": 0.1, "total_us": 123456}
FULL_D = {"avg10": 0.5, "avg60": 0.25, "avg300": 0.0, "total_us": 6543}


@pytest.mark.parametrize("data, expected", [
    (SOME + FULL, ({"some": SOME_D, "full": FULL_D}, 0)),
    (SOME, ({"some": SOME_D, "full": None}, 0)),              # cpu before 5.13
    (FULL + SOME, ({"some": SOME_D, "full": FULL_D}, 0)),     # order does not matter
    (b"", (None, 1)),
    (SOME[:30], (None, 1)),                                   # truncated
    (SOME + FULL[:25], ({"some": SOME_D, "full": None}, 1)),
    (b"some avg10=x avg60=0.75 avg300=0.10 total=1\n", (None, 1)),   # non-numeric
    (b"some avg10=1.50 avg60=0.75 avg300=0.10 total=-1\n", (None, 1)),
    (SOME.replace(b"\n", b" extra=5\n"), ({"some": SOME_D, "full": None}, 0)),  # extra column
    (b"half avg10=1 avg60=1 avg300=1 total=1\n" + SOME, ({"some": SOME_D, "full": None}, 1)),
    (SOME + b"x" * 100000 + b"\n", ({"some": SOME_D, "full": None}, 1)),   # very long line
])
def test_pressure_table(data, expected):
    assert parse_pressure(data) == expected
