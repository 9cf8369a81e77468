"""/proc/PID/limits: table test of parsers/limits.py, and this process's own file."""

import resource

import pytest

from hostdiag.parsers.limits import parse_limits, stat_start_time

HEADER = b"Limit                     Soft Limit           Hard Limit           Units     \n"


def _line(name, soft, hard, units=""):
    return ("%-25s %-20s %-20s %-10s\n" % (name, soft, hard, units)).encode()


@pytest.mark.parametrize("data, expected, malformed", [
    (HEADER + _line("Max open files", 1024, 1048576, "files") + _line("Max processes", 63474, 63474, "processes"),
     {"nofile": [1024, 1048576], "nproc": [63474, 63474]}, 0),
    (HEADER + _line("Max processes", "unlimited", "unlimited", "processes"), {"nproc": [None, None]}, 0),
    (HEADER + _line("Max nice priority", 0, 0) + _line("Max open files", 8, 8, "files"), {"nofile": [8, 8]}, 0),
    (HEADER + _line("Max open files", "lots", 8, "files"), {}, 1),                  # non-numeric
    (HEADER + b"Max open files            1024\n", {}, 1),                         # truncated
    (HEADER + _line("Max open files", 1, 2, "files extra columns here"), {"nofile": [1, 2]}, 0),
    (HEADER + b"Max open files" + b" " * 5000 + b"1 2\n", {}, 1),                  # one gap: one column
    (b"", {}, 0), (HEADER, {}, 0),
    (HEADER + _line("Max open files", "9" * 30, 1, "files"), {}, 1),               # over 20 digits
])
def test_limits_table(data, expected, malformed):
    assert parse_limits(data) == (expected, malformed)


def test_this_process_limits():
    with open("/proc/self/limits", "rb") as f:
        parsed, malformed = parse_limits(f.read())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinity = resource.RLIM_INFINITY
    assert malformed == 0
    assert parsed["nofile"] == [None if soft == infinity else soft, None if hard == infinity else hard]
    soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    assert parsed["nproc"] == [None if soft == infinity else soft, None if hard == infinity else hard]


def test_stat_start_time():
    with open("/proc/self/stat", "rb") as f:
        data = f.read()
    assert stat_start_time(data) == int(data.rpartition(b")")[2].split()[19])
    assert stat_start_time(b"1 (a) b) S 0 0") is None
    assert stat_start_time(b"") is None
    assert stat_start_time(b"1 (x) S" + b" 7" * 18 + b" 99 8") == 99
