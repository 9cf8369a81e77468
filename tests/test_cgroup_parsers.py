"""Table tests for the cgroup file parsers: empty, truncated, non-numeric,
extra columns, very long lines; and the recorded v2 tree's files."""

import os

import pytest

from hostdiag.parsers.cgroup import (
    UNLIMITED,
    parse_blkio,
    parse_cgroup_mounts,
    parse_cpu_max,
    parse_io_stat,
    parse_keyed,
    parse_value,
)

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "cgroup-v2-systemd", "root")
LONG = b"x" * 100000
WANT = (b"usage_usec", b"nr_throttled")


@pytest.mark.parametrize("data,expected", [
    (b"", ((None, None), 0)),
    (b"usage_usec 10\nnr_throttled 2\n", ((10, 2), 0)),
    (b"usage_usec 10\nnr_throttled 2", ((10, 2), 0)),       # no final newline
    (b"usage_usec 10\nnr_throttled\n", ((10, None), 1)),     # truncated
    (b"usage_usec ten\nnr_throttled 2\n", ((None, 2), 1)),   # non-numeric
    (b"usage_usec 10 11\nnr_throttled 2\n", ((None, 2), 1)),  # extra column
    (b"usage_usec -5\n", ((None, None), 1)),                 # negative
    (b"usage_usec 123456789012345678901\n", ((None, None), 1)),  # past u64
    (b"usage_usec 1\n" + LONG + b"\nnr_throttled 3\n", ((1, 3), 1)),
    (b"usage_usec 1\n\nnr_throttled 3\n", ((1, 3), 1)),     # blank line
    (b"usage_usec 1\nusage_usec 1\n", ((1, None), 0)),       # duplicate
])
def test_parse_keyed(data, expected):
    assert parse_keyed(data, WANT) == expected


@pytest.mark.parametrize("data,expected", [
    (b"", (None, 1)),
    (b"4096\n", (4096, 0)),
    (b"max\n", (UNLIMITED, 0)),
    (b"-1\n", (UNLIMITED, 0)),
    (b"9223372036854771712\n", (UNLIMITED, 0)),
    (b"4611686018427387904\n", (UNLIMITED, 0)),       # 2**62: the v1 ceiling with 64 KiB pages
    (b"4611686018427387903\n", (4611686018427387903, 0)),
    (b"12 13\n", (None, 1)),
    (b"-2\n", (None, 1)),
    (b"maxi\n", (None, 1)),
    (LONG, (None, 1)),
])
def test_parse_value(data, expected):
    assert parse_value(data) == expected


@pytest.mark.parametrize("data,expected", [
    (b"max 100000\n", ((UNLIMITED, 100000), 0)),
    (b"50000 100000\n", ((50000, 100000), 0)),
    (b"", (None, 1)),
    (b"50000\n", (None, 1)),
    (b"50000 100000 1\n", (None, 1)),
    (b"half 100000\n", (None, 1)),
    (b"max max\n", (None, 1)),
])
def test_parse_cpu_max(data, expected):
    assert parse_cpu_max(data) == expected


def _io(**values):
    return tuple(values.get(key) for key in ("rbytes", "wbytes", "rios", "wios", "dbytes", "dios"))


@pytest.mark.parametrize("data,expected", [
    (b"", ({}, 0)),
    (b"8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=5 dios=6\n",
     ({"8:0": _io(rbytes=1, wbytes=2, rios=3, wios=4, dbytes=5, dios=6)}, 0)),
    # iocost and iolatency add their own keys: left out, not malformed
    (b"8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0 cost.vrate=100.00 depth=4\n",
     ({"8:0": _io(rbytes=1, wbytes=2, rios=3, wios=4, dbytes=0, dios=0)}, 0)),
    (b"8:0 rbytes=1 wbytes=2\n", ({"8:0": _io(rbytes=1, wbytes=2)}, 0)),   # truncated: the rest None
    (b"8:0 rbytes=x wbytes=2\n", ({"8:0": _io(wbytes=2)}, 0)),
    (b"8:0\n", ({}, 1)),
    (b"sda rbytes=1\n", ({}, 1)),
    (b"8:0 rbytes=1\n" + LONG + b"\n", ({"8:0": _io(rbytes=1)}, 1)),
])
def test_parse_io_stat(data, expected):
    assert parse_io_stat(data) == expected


@pytest.mark.parametrize("data,expected", [
    (b"", ({}, 0)),
    (b"Total 0\n", ({}, 0)),
    (b"8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Discard 0\n8:0 Total 12288\nTotal 12288\n",
     ({"8:0": (4096, 8192, 0)}, 0)),
    (b"8:0 Read 4096\n8:0 Write\n", ({"8:0": (4096, None, None)}, 1)),
    (b"8:0 Read many\n", ({}, 1)),
    (b"8:0 Read 1 2\n", ({}, 1)),
    (b"8:0 Peek 1\n", ({}, 1)),
    (b"sda Read 1\n", ({}, 1)),
    (LONG + b"\n8:16 Write 7\n", ({"8:16": (None, 7, None)}, 1)),
])
def test_parse_blkio(data, expected):
    assert parse_blkio(data) == expected


MOUNTINFO = (
    b"22 28 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n"
    b"30 22 0:26 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
    b"32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct\n"
    b"40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
    # the same cpu hierarchy bound again into a container, at its own cgroup
    b"90 80 0:29 /docker/abc /var/lib/x/cg\\040cpu rw - cgroup cgroup rw,cpu,cpuacct\n"
    b"91 80 0:29 /docker rw - cgroup\n"                      # truncated
    b"92 80 0:44 / /mnt rw - ext4 /dev/sda1 rw\n"
)


def test_parse_cgroup_mounts():
    (mounts, sysfs), malformed = parse_cgroup_mounts(MOUNTINFO)
    assert malformed == 1
    assert sysfs == ["/sys"]
    assert mounts == [
        {"type": "cgroup2", "mount": "/sys/fs/cgroup", "root": "/", "controllers": (), "device": "0:26"},
        {"type": "cgroup", "mount": "/sys/fs/cgroup/cpu,cpuacct", "root": "/", "controllers": ("cpu", "cpuacct"),
         "device": "0:29"},
        {"type": "cgroup", "mount": "/sys/fs/cgroup/systemd", "root": "/", "controllers": ("name=systemd",),
         "device": "0:37"},
    ]


def test_parse_cgroup_mounts_keeps_a_bind_mount_alone_and_unescapes():
    (mounts, _), malformed = parse_cgroup_mounts(MOUNTINFO.split(b"\n")[4] + b"\n")
    assert malformed == 0
    assert mounts[0]["mount"] == "/var/lib/x/cg cpu" and mounts[0]["root"] == "/docker/abc"


@pytest.mark.parametrize("data", [b"", b"\n\n", LONG, b"1 2 3 4 5 6 - \n"])
def test_parse_cgroup_mounts_odd_input(data):
    (mounts, sysfs), _ = parse_cgroup_mounts(data)
    assert (mounts, sysfs) == ([], [])


def _fixture(*parts):
    with open(os.path.join(FIXTURE, "sys/fs/cgroup", *parts), "rb") as handle:
        return handle.read()


def test_recorded_v2_files():
    scope = "system.slice/docker-4c1e0e3b8a6f2d9c7b5a3e1f0d2c4b6a8e0f1d3c5b7a9e2f4d6c8b0a1e3f5d7c.scope"
    assert parse_keyed(_fixture(scope, "memory.events"), (b"oom_kill", b"max")) == ((2, 1375), 0)
    assert parse_keyed(_fixture(scope, "memory.stat"), (b"anon", b"pgmajfault")) == ((301989888, 17), 0)
    assert parse_cpu_max(_fixture(scope, "cpu.max")) == ((50000, 100000), 0)
    devices, bad = parse_io_stat(_fixture("io.stat"))
    assert (sorted(devices), bad) == (["253:0", "259:0"], 0)
    assert parse_value(_fixture(scope, "memory.high")) == (UNLIMITED, 0)
    # nginx.service's memory.stat was recorded with one line cut short
    assert parse_keyed(_fixture("system.slice/nginx.service", "memory.stat"), ())[1] == 1
