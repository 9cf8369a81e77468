"""The one-screen text report: real snapshots with and without rates, the
recorded fixture trees, and snapshots with every section missing."""

import copy
import pathlib
import re
import time

import pytest

from hostdiag.collect import SystemCollector
from hostdiag.derive import derive_rates
from hostdiag.hostpaths import HostRoot
from hostdiag.model import Cpu, ErrorRecord, Memory, Snapshot
from hostdiag.views.findings import evaluate
from hostdiag.views.report import human_bits, human_bytes, human_count, render_text

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
TREES = sorted(p.name for p in FIXTURES.iterdir() if (p / "proc").is_dir()) if FIXTURES.is_dir() else []
ANSI = re.compile(r"\x1b\[")


@pytest.fixture(scope="module")
def real_pair():
    with SystemCollector(HostRoot()) as collector:
        prev = collector.collect()
        time.sleep(0.3)
        cur = collector.collect(kmsg=True)
    return prev, cur


def test_report_with_rates(real_pair):
    prev, cur = real_pair
    rates = derive_rates(prev, cur)
    text = render_text(cur, rates, evaluate(cur, rates))
    lines = text.splitlines()
    assert lines[0].startswith("hostdiag  %s  kernel %s" % (cur.meta.hostname, cur.meta.kernel))
    assert "interval 0.3" in lines[0] and "parser %s" % cur.meta.parser_impl in lines[0]
    for label in ("FINDINGS", "LOAD", "CPU %", "PRESSURE", "MEMORY", "DISK", "FS", "NET", "TCP", "KERNEL"):
        assert any(line.startswith(label) for line in lines), label
    assert "no rates" not in text
    assert not ANSI.search(text)
    assert 15 <= len(lines) <= 70
    assert max(len(line) for line in lines) <= 140


def test_report_without_rates(real_pair):
    _, cur = real_pair
    text = render_text(cur, None, evaluate(cur, None))
    assert "no rates: one snapshot" in text.splitlines()[0]
    assert "CPU %" not in text and "r/s" not in text
    assert "MEMORY" in text and "LOAD" in text
    assert not ANSI.search(text)


def test_report_across_boots_says_why(real_pair):
    prev, cur = real_pair
    other = copy.deepcopy(prev)
    other.meta.boot_id = "another-boot"
    rates = derive_rates(other, cur)
    text = render_text(cur, rates, evaluate(cur, rates))
    assert "no rates: different boots" in text
    assert "CPU %" not in text


def test_findings_on_top_with_evidence_and_colour(real_pair):
    prev, cur = real_pair
    cur = copy.deepcopy(cur)
    cur.filesystems = [{"mountpoint": "/data", "fstype": "ext4", "size_bytes": 100 * 2**30,
                        "free_bytes": 2**30, "avail_bytes": 2**30, "files": 100, "files_free": 50,
                        "readonly": False, "options": "rw"}]
    cur.cpu = copy.deepcopy(cur.cpu)
    cur.cpu.loadavg = dict(cur.cpu.loadavg or {}, load1=50.0)
    rates = derive_rates(prev, cur)
    findings = evaluate(cur, rates)
    assert {"fs_space", "load_high"} <= {f["id"] for f in findings}
    plain = render_text(cur, rates, findings).splitlines()
    first = plain.index(next(line for line in plain if line.startswith("FINDINGS")))
    assert first <= 2
    assert plain[first + 1].startswith("  CRIT  /data 99 % of space used  [fs_space: space used >= 95 %]")
    assert "used_pct 99.0%" in plain[first + 2] and "avail_bytes 1.0GiB" in plain[first + 2]
    assert any("WARN" in line and "load_high" in line for line in plain)
    coloured = render_text(cur, rates, findings, color=True)
    assert "\x1b[31mCRIT" in coloured and "\x1b[33mWARN" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == "\n".join(plain) + "\n"


def test_errors_shown_compactly(real_pair):
    _, cur = real_pair
    cur = copy.deepcopy(cur)
    cur.meta.errors = [ErrorRecord("src%d" % i, "/proc/x%d" % i, "missing", "gone") for i in range(5)]
    lines = render_text(cur, None, []).splitlines()
    assert "errors 5" in lines[0]
    assert lines[1].startswith("errors   src0: missing /proc/x0; src1: missing /proc/x1; src2: missing /proc/x2")
    assert lines[1].endswith("(+2 more)")


def _all_none(meta):
    return [
        Snapshot(meta=meta),
        Snapshot(meta=meta, cpu=Cpu(*([None] * 11)), memory=Memory(None, None, None),
                 pressure={"cpu": None}, disks=[{}, None], filesystems=[{}, None],
                 network=dict.fromkeys(("links", "snmp", "netstat", "sockstat", "softnet", "conntrack"))
                 | {"links": [{}, None, {"name": "x", "operstate": "up", "stats": None}]},
                 kernel={"kmsg": [None, {}], "file_nr": None, "tainted": None}),
    ]


def test_report_with_every_section_missing(real_pair):
    prev, cur = real_pair
    meta = copy.deepcopy(cur.meta)
    meta.hostname = meta.kernel = None
    for snapshot in _all_none(meta):
        for rates in (None, derive_rates(prev, cur), derive_rates(snapshot, snapshot),
                      derive_rates(Snapshot(meta=prev.meta), snapshot)):
            text = render_text(snapshot, rates, evaluate(snapshot, rates))
            assert text.startswith("hostdiag  ?  kernel ?")
            assert not ANSI.search(text)


@pytest.mark.parametrize("tree", TREES)
def test_report_on_fixture_trees(tree):
    base = FIXTURES / tree
    root = HostRoot(str(base / "proc"), str(base / "sys"), str(base))
    with SystemCollector(root) as collector:
        first = collector.collect()
        second = collector.collect()
    second.meta.mono_ns = first.meta.mono_ns + 10**9
    for rates in (None, derive_rates(first, second)):
        text = render_text(second, rates, evaluate(second, rates))
        assert text.count("\n") <= 70
        assert not ANSI.search(text)
    assert "errors %d" % len(second.meta.errors) in text


@pytest.mark.parametrize("func, value, expected", [
    (human_bytes, 0, "0B"), (human_bytes, 1023, "1023B"), (human_bytes, 1536, "1.5KiB"),
    (human_bytes, 3 * 2**30, "3.0GiB"), (human_bytes, None, "-"),
    (human_bits, 999, "999b"), (human_bits, 12_300_000, "12.3Mb"), (human_bits, 2.5e9, "2.5Gb"),
    (human_count, 7, "7"), (human_count, 0.25, "0.2"), (human_count, 1234, "1.2k"),
    (human_count, 3_400_000, "3.4M"), (human_count, None, "-"), (human_count, "x", "-"),
])
def test_human_units(func, value, expected):
    assert func(value) == expected
