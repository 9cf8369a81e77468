"""The compiled cgroup reader (hostdiag._cgroup) against its pure twin
(hostdiag.parsers.cgroup): the same bytes, the same directories, equal results."""

import os
import random

import pytest

from hostdiag.parsers import cgroup as pure
from hostdiag.parsers.cgroup import BLKIO, CPU_MAX, IO_STAT, KEYED, PRESSURE, VALUE

from twinsupport import compiled_twin


@pytest.fixture(scope="module")
def compiled():
    return compiled_twin("cgroup")


FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
TREE = os.path.join(FIXTURES, "cgroup-v2-systemd", "root", "sys", "fs", "cgroup")
KEYS = (b"anon", b"file", b"usage_usec", b"max", b"oom_kill", b"nr_throttled", b"total_rss")
KINDS = (VALUE, KEYED, CPU_MAX, IO_STAT, BLKIO, PRESSURE)

# Odd inputs beside the table tests' (tests/test_cgroup_parsers.py).
ODD = [
    b"", b"\n", b"\n\n", b" ", b"max", b"max\n", b"-1", b" 42 \n", b"0", b"00012\n", b"18446744073709551615\n",
    b"18446744073709551616\n", b"99999999999999999999\n", b"123456789012345678901\n", b"4611686018427387904",
    b"4611686018427387903", b"\t7\x0b", b"7\r\n", b"max 100000", b"max max", b"10 20 30", b"a b",
    b"anon 1\nanon 2\n", b"anon 1", b"anon  1\n", b" anon 1\n", b"anon 1 \n", b"anon\t1\n", b"anon 1\r\n",
    b"%s 1\n" % (b"k" * 64), b"%s 1\n" % (b"k" * 65), b"a.b_c 3\n", b"a-b 3\n", b"anon 1\n\nfile 2",
    b"8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=5 dios=6\n", b"8:0 rbytes=1 rbytes=9\n", b"8:0 =5 rbytes=\n",
    b"8: rbytes=1\n", b":0 rbytes=1\n", b"8:0:1 rbytes=1\n", b"8:0\trbytes=1\x0cwbytes=2\n",
    b"8:0 rbytes=123456789012345678901\n", b"8:0 Read 1\n8:0 Write 2\n8:0 Discard 3\nTotal 6\n",
    b"Total\n", b"Total x\n", b"8:0 Sync 1\n", b"8:0 Total 1\n", b"8:0 read 1\n", b"8:0 Read 1 2\n",
    b"x" * 70000, b"\xff\xfe 1\n", b"\x00\n",
    b"some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    b"some avg10=1.50 avg60=2.25 avg300=99.99 total=123\nfull avg10=0.10 avg60=0.00 avg300=0.00 total=45\n",
    b"some avg10=1.5 avg60=2.25 avg300=99.99 total=123\n", b"some avg10=1.50 avg60=2.25 avg300=99.99 total=123",
    b"full avg10=0.10 avg60=0.00 avg300=0.00 total=45\nsome avg10=1.50 avg60=2.25 avg300=99.99 total=123\n",
    b"some avg10=1234567890.00 avg60=0.00 avg300=0.00 total=1\n", b"some avg60=0.00 avg10=0.00 avg300=0.00 total=1\n",
    b"some avg10=1_0.00 avg60=0.00 avg300=0.00 total=1\n",
]


def _inputs():
    for base, _, files in sorted(os.walk(TREE)):
        for name in sorted(files):
            with open(os.path.join(base, name), "rb") as handle:
                yield handle.read()
    yield from ODD


def _mutations(data, rng, count):
    """Cut, repeated and corrupted copies of ``data``."""
    alphabet = b"0123456789 \n\t=:-.maxTotalRead"
    for _ in range(count):
        blob = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            action = rng.randrange(4)
            at = rng.randint(0, len(blob))
            if action == 0:
                del blob[at:]
            elif action == 1:
                blob[at:at] = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
            elif action == 2 and blob:
                blob[min(at, len(blob) - 1)] = rng.randrange(256)
            else:
                blob += blob[at:at + rng.randint(0, 40)]
        yield bytes(blob)


def test_same_results_on_recorded_and_odd_input(compiled):
    for data in _inputs():
        for kind in KINDS:
            assert compiled.parse_file(kind, KEYS, data) == pure.parse_file(kind, KEYS, data), (kind, data[:200])


def test_same_results_on_generated_input(compiled):
    rng = random.Random(1729)
    for seed in list(_inputs())[:60] + ODD:
        for data in _mutations(seed, rng, 20):
            for kind in KINDS:
                assert compiled.parse_file(kind, KEYS, data) == pure.parse_file(kind, KEYS, data), (kind, data[:200])


SPECS = ((b"cpu.stat", KEYED, (b"usage_usec", b"nr_throttled")), (b"cpu.max", CPU_MAX, None),
         (b"memory.max", VALUE, None), (b"memory.swap.max", VALUE, None), (b"io.stat", IO_STAT, None),
         (b"memory.stat", KEYED, (b"anon", b"kernel")), (b"cpu.pressure", PRESSURE, None))


@pytest.mark.parametrize("directory", sorted(base for base, _, _ in os.walk(TREE)))
def test_same_directory_results(compiled, directory):
    path = os.fsencode(directory)
    assert compiled.read_dir(path, SPECS, 1 << 20) == pure.read_dir(path, SPECS, 1 << 20)


def test_same_errors_and_caps(compiled, tmp_path):
    (tmp_path / "big").write_bytes(b"7\n" * 100000)
    (tmp_path / "small").write_bytes(b"7\n")
    (tmp_path / "sub").mkdir()
    specs = ((b"big", VALUE, None), (b"small", VALUE, None), (b"absent", VALUE, None), (b"sub", VALUE, None))
    path = os.fsencode(str(tmp_path))
    for cap in (1, 2, 199999, 200000, 1 << 20):
        assert compiled.read_dir(path, specs, cap) == pure.read_dir(path, specs, cap), cap
    nlink, inode, values, malformed, errors = compiled.read_dir(path, specs, 200000)
    assert (nlink, inode, values[1], malformed, sorted(e for _, e in errors)) == (
        3, os.stat(path).st_ino, 7, [(0, 1)], sorted([2, 21]))
    assert compiled.read_dir(path + b"/gone", specs, 10) is None is pure.read_dir(path + b"/gone", specs, 10)
    assert compiled.read_dir(path + b"/small", specs, 10) is None is pure.read_dir(path + b"/small", specs, 10)
