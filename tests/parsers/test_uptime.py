"""/proc/uptime: table test of parsers/uptime.py."""

import pytest

from hostdiag.parsers.uptime import parse_uptime


@pytest.mark.parametrize("data, expected", [
    (b"350735.47 234388.90\n", ({"uptime_s": 350735.47, "idle_s": 234388.90}, 0)),
    (b"350735.47 234388.90 extra\n", ({"uptime_s": 350735.47, "idle_s": 234388.90}, 0)),
    (b"", (None, 1)),
    (b"350735.47", (None, 1)),                             # truncated
    (b"350735.47 idle\n", (None, 1)),                      # non-numeric
    (b"nan 1.0\n", (None, 1)),
    (b"1.0 " + b"9" * 100000 + b"\n", (None, 1)),          # a very long number is infinite
    (b"1.0 2.0 " + b"x" * 100000 + b"\n", ({"uptime_s": 1.0, "idle_s": 2.0}, 0)),
])
def test_uptime_table(data, expected):
    assert parse_uptime(data) == expected
