"""/proc/loadavg: table test of parsers/loadavg.py."""

import pytest

from hostdiag.parsers.loadavg import parse_loadavg

LOADAVG = {"load1": 0.52, "load5": 0.31, "load15": 0.2, "runnable": 2, "threads": 183, "last_pid": 4242}


@pytest.mark.parametrize("data, expected", [
    (b"0.52 0.31 0.20 2/183 4242\n", (LOADAVG, 0)),
    (b"0.52 0.31 0.20 2/183 4242 extra columns\n", (LOADAVG, 0)),
    (b"", (None, 1)),
    (b"0.52 0.31 0.20 2/183", (None, 1)),                 # truncated: no last pid
    (b"0.52 0.31 0.20 2 4242\n", (None, 1)),              # no runnable/threads pair
    (b"0.52 x 0.20 2/183 4242\n", (None, 1)),             # non-numeric load
    (b"0.52 0.31 0.20 2/x 4242\n", (None, 1)),            # non-numeric threads
    (b"0.52 0.31 0.20 2/183 -1\n", (None, 1)),            # negative pid
    (b"nan 0.31 0.20 2/183 4242\n", (None, 1)),           # not a finite number
    (b"inf 0.31 0.20 2/183 4242\n", (None, 1)),
    (b"0.52 0.31 0.20 2/1/83 4242\n", (None, 1)),
    (b"0.52 0.31 0.20 2/183 " + b"9" * 21 + b"\n", (None, 1)),  # beyond 20 digits
    (b"0.52 0.31 0.20 2/183 4242 " + b"x" * 100000 + b"\n", (LOADAVG, 0)),
])
def test_loadavg_table(data, expected):
    assert parse_loadavg(data) == expected
