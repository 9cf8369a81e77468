"""The twin suite of the per-process parsers and scanner: the compiled
``hostdiag._procpid`` and the pure ``hostdiag.parsers.procpid``.

Every table test runs over both implementations; the compiled one fails (it is
not skipped) when the extension is missing, unless HOSTDIAG_PURE is set. Then
the same bytes go to both and must give equal results: every current pid's
real files, the recorded tree under tests/fixtures/proc-pid, and generated
garbage, truncations and mutations.
"""

import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostdiag.sources.hostroot import HostRoot, SourceError
from twinsupport import compiled_twin, twin_fixture

from hostdiag.parsers import procpid
from hostdiag.sources.problems import Problems
from hostdiag.sources.proc_pid import ProcessTable

FIXTURES = Path(__file__).parent.parent / "fixtures" / "proc-pid"
PARSERS = ("parse_stat", "parse_status", "parse_statm", "parse_io")
FILES = {"parse_stat": "stat", "parse_status": "status", "parse_statm": "statm",
         "parse_io": "io"}
ODD_COMM = "a) (b\nc )d"
HYPOTHESIS = settings(max_examples=300, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])


impl = twin_fixture("procpid")


def compiled():
    return compiled_twin("procpid")


def stat_line(comm=b"cat", fields=52, **overrides):
    """A stat line of ``fields`` fields with a few known values (by field number)."""
    values = {4: b"1", 9: b"4194304", 10: b"103", 12: b"2", 14: b"11", 15: b"7",
              18: b"20", 19: b"0", 20: b"1", 22: b"37116", 23: b"3133440", 24: b"417",
              42: b"5", 48: b"140728184597236", 49: b"140728184597260"}
    values.update({int(k[1:]): v for k, v in overrides.items()})
    tail = [values.get(n, b"0") for n in range(4, fields + 1)]
    return b"8332 (" + comm + b") " + values.get(3, b"R") + b" " + b" ".join(tail) + b"\n"


# ---------------------------------------------------------------- parse_stat

def test_stat_fields(impl):
    result, malformed = impl.parse_stat(stat_line())
    assert malformed == 0
    assert result == {
        "pid": 8332, "comm": "cat", "state": "R", "ppid": 1, "flags": 4194304,
        "minflt": 103, "majflt": 2, "utime": 11, "stime": 7, "priority": 20, "nice": 0,
        "num_threads": 1, "start_time": 37116, "vsize_bytes": 3133440, "rss_pages": 417,
        "delayacct_blkio_ticks": 5, "arg_start": 140728184597236,
        "arg_end": 140728184597260,
    }


@pytest.mark.parametrize("comm", [
    b"a) (b\nc )d", b"(", b")", b"))((", b"x) S 1 2 3", b"", b" ", b"a\nb\nc",
    b"with space", b"kworker/u8:0-events_unbound", b"\xff\xfe", b"nul\0in", b"x" * 1000,
])
def test_stat_comm_is_between_the_first_open_and_the_last_close(impl, comm):
    result, malformed = impl.parse_stat(stat_line(comm=comm))
    assert malformed == 0
    assert result["comm"] == comm.decode("utf-8", "replace")
    assert result["start_time"] == 37116


def test_stat_signed_and_limits(impl):
    result, _ = impl.parse_stat(stat_line(f18=b"-100", f19=b"-20",
                                          f23=b"18446744073709551615"))
    assert (result["priority"], result["nice"]) == (-100, -20)
    assert result["vsize_bytes"] == 2 ** 64 - 1


def test_stat_old_kernels_give_fewer_fields(impl):
    for fields, blkio, arg in ((24, None, None), (41, None, None), (44, 5, None),
                               (49, 5, 140728184597260)):
        result, malformed = impl.parse_stat(stat_line(fields=fields))
        assert malformed == 0
        assert result["delayacct_blkio_ticks"] == blkio
        assert result["arg_end"] == arg


@pytest.mark.parametrize("data", [
    b"", b"\n", b"8332", b"8332 (cat", b"8332 cat) R 1", b") 8332 (cat",
    stat_line(fields=23), stat_line()[:60],
    stat_line(f14=b"12x"), stat_line(f22=b"-1"), stat_line(f19=b"--1"), stat_line(f19=b"-"),
    stat_line(f23=b"18446744073709551616"), stat_line(f3=b"RS"),
    b"83 32 (cat) R" + stat_line()[12:], b"x (cat)" + stat_line()[11:],
    b"(cat)" + stat_line()[10:],
])
def test_stat_malformed(impl, data):
    assert impl.parse_stat(data) == (None, 1)


def test_stat_ignores_fields_it_does_not_read(impl):
    result, malformed = impl.parse_stat(stat_line(f5=b"junk", f30=b"x", fields=60))
    assert malformed == 0 and result["utime"] == 11


# ---------------------------------------------------------------- parse_status

STATUS = (b"Name:\tcat\nUmask:\t0022\nState:\tR (running)\nTgid:\t8334\nPid:\t8334\n"
          b"PPid:\t8326\nUid:\t1000\t1001\t1002\t1003\nGid:\t0\t0\t0\t0\n"
          b"Groups:\t" + b" ".join(b"%d" % i for i in range(20000)) + b"\n"
          b"Threads:\t1\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n")


def test_status_fields(impl):
    assert impl.parse_status(STATUS) == (
        {"uid": 1001, "voluntary_ctxt_switches": 12, "nonvoluntary_ctxt_switches": 3}, 0)


@pytest.mark.parametrize("data, expected, malformed", [
    (b"", {}, 0),
    (b"Name:\tx\n", {}, 0),
    (b"Uid:\t0\t0\n", {}, 1),
    (b"Uid:\t0\t0\t0\t0\t0\n", {}, 1),
    (b"Uid:\t0\tx\t0\t0\n", {}, 1),
    (b"Uid:\t1\t2\t3\t4\nUid:\t5\t6\t7\t8\n", {"uid": 6}, 0),
    (b"voluntary_ctxt_switches:\n", {}, 1),
    (b"voluntary_ctxt_switches:\t1 2\n", {}, 1),
    (b"voluntary_ctxt_switches:\t-1\n", {}, 1),
    (b"nonvoluntary_ctxt_switches:\t7", {"nonvoluntary_ctxt_switches": 7}, 0),
    (b" Uid:\t1\t2\t3\t4\n", {}, 0),
    (b"uid:\t1\t2\t3\t4\nUid\t1\t2\t3\t4\n", {}, 0),
    (b"Uid:1 2 3 4\r\n", {"uid": 2}, 0),
    (STATUS[:STATUS.index(b"voluntary") + 12], {"uid": 1001}, 0),
])
def test_status_table(impl, data, expected, malformed):
    result, bad = impl.parse_status(data)
    assert result == dict(dict.fromkeys(procpid.STATUS_FIELDS), **expected)
    assert bad == malformed


# ---------------------------------------------------------------- parse_statm and parse_io

@pytest.mark.parametrize("data, expected", [
    (b"765 444 415 5 0 123 0\n", {"size_pages": 765, "resident_pages": 444,
                                  "shared_pages": 415, "text_pages": 5, "data_pages": 123}),
    (b"1 2 3 4 5 6 7 8 9\n", {"size_pages": 1, "resident_pages": 2, "shared_pages": 3,
                              "text_pages": 4, "data_pages": 6}),
    (b"1 2 3 4 5 6 7 x\n", {"size_pages": 1, "resident_pages": 2, "shared_pages": 3,
                            "text_pages": 4, "data_pages": 6}),
    (b"", None), (b"1 2 3 4 5 6\n", None), (b"1 2 3 x 5 6 7\n", None), (b"1 2 3 4 5 6 -7", None),
])
def test_statm_table(impl, data, expected):
    assert impl.parse_statm(data) == (expected, 0 if expected else 1)


IO = (b"rchar: 6976\nwchar: 0\nsyscr: 10\nsyscw: 0\nread_bytes: 4096\n"
      b"write_bytes: 8192\ncancelled_write_bytes: 0\n")


@pytest.mark.parametrize("data, expected, malformed", [
    (IO, {"rchar": 6976, "wchar": 0, "syscr": 10, "syscw": 0, "read_bytes": 4096,
          "write_bytes": 8192, "cancelled_write_bytes": 0}, 0),
    (b"", {}, 0),
    (b"\n\n  \n", {}, 0),
    (b"read_bytes: 1\nnew_field: 5\n", {"read_bytes": 1}, 0),
    (b"read_bytes: x\nwrite_bytes: 2\n", {"write_bytes": 2}, 1),
    (b"read_bytes 1\n", {}, 1),
    (b"read_bytes:\n", {}, 1),
    (b": 1\n", {}, 1),
    (b"read_bytes: 1 kB\n", {}, 1),
    (b"read_bytes:1\n", {}, 1),
    (b"cancelled_write_bytes: -4096\nwrite_bytes: 8192\n",
     {"cancelled_write_bytes": -4096, "write_bytes": 8192}, 0),
    (b"read_bytes: -1\nwrite_bytes: -8192\n", {}, 2),
    (b"cancelled_write_bytes: -\n", {}, 1),
    (b"cancelled_write_bytes: -18446744073709551615\n",
     {"cancelled_write_bytes": -18446744073709551615}, 0),
    (b"garbage\nwrite_bytes: 3", {"write_bytes": 3}, 1),
    (IO[:54], {"rchar": 6976, "wchar": 0, "syscr": 10, "syscw": 0, "read_bytes": 40}, 0),
    (IO[:50], {"rchar": 6976, "wchar": 0, "syscr": 10, "syscw": 0}, 1),
])
def test_io_table(impl, data, expected, malformed):
    result, bad = impl.parse_io(data)
    assert result == dict(dict.fromkeys(procpid.IO_FIELDS), **expected)
    assert bad == malformed


def test_shared_cold_parsers_are_the_same_objects(impl):
    for name in ("parse_cmdline", "parse_cgroup", "parse_oom_score_adj", "kernel_thread"):
        assert getattr(impl, name) is getattr(procpid, name)


@pytest.mark.parametrize("data, expected", [
    (b"0\n", (0, 0)), (b"-1000\n", (-1000, 0)), (b"1000", (1000, 0)),
    (b"", (None, 1)), (b"x\n", (None, 1)), (b"1 2\n", (None, 1)),
])
def test_oom_score_adj(data, expected):
    assert procpid.parse_oom_score_adj(data) == expected


# ---------------------------------------------------------------- the same bytes to both

def real_files():
    """(parser, bytes) of every current pid's stat, status, statm and io."""
    root = HostRoot()
    samples = []
    for pid in procpid.list_pids(root.proc_root):
        for parser, name in FILES.items():
            try:
                samples.append((parser, root.read_proc(str(pid), name)))
            except SourceError:
                continue
    return samples


def fixture_files():
    samples = []
    for path in sorted(FIXTURES.glob("*/*")):
        for parser, name in FILES.items():
            if path.name == name:
                samples.append((parser, path.read_bytes()))
    return samples


def test_real_files_of_every_pid_give_equal_results():
    module = compiled()
    samples = real_files()
    assert len(samples) > 100
    for parser, data in samples:
        assert getattr(module, parser)(data) == getattr(procpid, parser)(data), (parser, data)


def test_fixture_files_give_equal_results():
    module = compiled()
    samples = fixture_files()
    assert {parser for parser, _ in samples} == set(PARSERS)
    for parser, data in samples:
        assert getattr(module, parser)(data) == getattr(procpid, parser)(data), (parser, data)


SEEDS = [data for _, data in fixture_files()] + [stat_line(), STATUS[:400], IO]
ALPHABET = b" ()\n\t\r-:0123456789xZUidvn\x00\xff"


@HYPOTHESIS
@given(parser=st.sampled_from(PARSERS), data=st.binary(max_size=2000))
def test_garbage_gives_equal_results(parser, data):
    module = compiled()
    assert getattr(module, parser)(data) == getattr(procpid, parser)(data)


@HYPOTHESIS
@given(parser=st.sampled_from(PARSERS), seed=st.sampled_from(SEEDS), cut=st.integers(0, 4000))
def test_truncations_give_equal_results(parser, seed, cut):
    module = compiled()
    data = seed[:cut]
    assert getattr(module, parser)(data) == getattr(procpid, parser)(data)


@HYPOTHESIS
@given(parser=st.sampled_from(PARSERS), seed=st.sampled_from(SEEDS),
       edits=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 3),
                                st.binary(min_size=1, max_size=3).map(
                                    lambda b: bytes(ALPHABET[x % len(ALPHABET)] for x in b))),
                      max_size=6))
def test_mutations_give_equal_results(parser, seed, edits):
    """Replace, insert or delete a few bytes of a real file, often separators."""
    module = compiled()
    data = bytearray(seed)
    for position, action, chunk in edits:
        position = position % (len(data) + 1)
        if action == 0:
            data[position:position + len(chunk)] = chunk
        elif action == 1:
            data[position:position] = chunk
        else:
            del data[position:position + len(chunk)]
    data = bytes(data)
    assert getattr(module, parser)(data) == getattr(procpid, parser)(data)


@HYPOTHESIS
@given(comm=st.binary(max_size=40), fields=st.integers(20, 60),
       values=st.lists(st.sampled_from([b"0", b"-1", b"18446744073709551615",
                                        b"18446744073709551616", b"x", b"-", b"007"]),
                       min_size=0, max_size=10))
def test_generated_stat_lines_give_equal_results(comm, fields, values):
    module = compiled()
    overrides = {"f%d" % (4 + 3 * i): v for i, v in enumerate(values)}
    data = stat_line(comm=comm, fields=fields, **overrides)
    assert module.parse_stat(data) == procpid.parse_stat(data)


# ---------------------------------------------------------------- scanning the fixture tree

def fixture_scan(module, fd_mode=procpid.FD_OFF, pids=None):
    return module.scan(str(FIXTURES), pids, {}, 0, 0, fd_mode, 4096)


def test_fixture_tree_scans_equal_in_both_twins():
    module = compiled()
    assert fixture_scan(module) == fixture_scan(procpid)
    with_fds = sorted(int(p.parent.parent.name) for p in FIXTURES.glob("*/fd/0"))
    assert len(with_fds) >= 2
    assert fixture_scan(module, procpid.FD_LIST, with_fds) == \
        fixture_scan(procpid, procpid.FD_LIST, with_fds)


def test_fixture_tree_records(impl):
    records, cache, misses, vanished, malformed, errors, seen = fixture_scan(impl)
    by_comm = {}
    for record in records:
        by_comm.setdefault(record["comm"], []).append(record)
    odd = [r for r in records if r["comm"] == ODD_COMM and r["pid"] < 900000][0]
    assert odd["state"] == "S" and odd["uid"] == 0 and odd["num_threads"] == 1
    heavy = [r for r in records if r["num_threads"] == 8][0]
    assert heavy["rss_bytes"] >= 50 << 20
    zombie = [r for r in records if r["state"] == "Z"][0]
    assert zombie["vsize_bytes"] == 0 and zombie["kernel_thread"] is False
    assert by_comm["kthreadd"][0]["kernel_thread"] is True
    kworker = [r for r in records if r["comm"].startswith("kworker/")][0]
    assert kworker["kernel_thread"] is True and kworker["nice"] == -20
    pids = {r["pid"]: r for r in records}
    assert not {900001, 900002, 900005} & set(pids)
    assert malformed == {"stat": 3, "status": 1, "io": 2}
    old = pids[900003]
    assert old["voluntary_ctxt_switches"] is None and old["delayacct_blkio_ticks"] is not None
    damaged = pids[900004]
    assert damaged["uid"] is None and damaged["read_bytes"] == 4096
    assert damaged["write_bytes"] == 8192
    assert (vanished, errors, cache) == (0, [], {})
    assert len(misses) == len(records)
    assert [record for _, record in seen.values()] == records
    assert seen[900003][0] == (FIXTURES / "900003" / "stat").read_bytes()


def test_fixture_tree_through_the_table(impl):
    """A recorded root: facts are parsed and redacted, fd counts are off."""
    table = ProcessTable(HostRoot(proc_root=str(FIXTURES)), parsers=impl)
    problems = Problems()
    section = table.scan(problems)
    odd = [r for r in section["processes"] if r["comm"] == ODD_COMM and r["pid"] < 900000][0]
    assert odd["cmdline"][-5:] == ["line1\nline2", "--password=***", "--token", "***",
                                   "https://user:***@example.com/x"]
    assert odd["cgroup"].startswith("/") and odd["oom_score_adj"] == 0
    assert odd["fd_count"] is None and odd["user"] == "root"
    kinds = {(e["path"].rsplit("/", 1)[-1], e["kind"], e["count"]) for e in problems.all()}
    assert kinds == {("stat", "malformed", 3), ("status", "malformed", 1), ("io", "malformed", 2)}
    assert section["counts"]["by_state"]["Z"] == 1


# ------------------------------------------- a recorded tree without the optional files

MISSING_FILES = Path(__file__).parent.parent / "fixtures" / "processes-missing-files"


def test_absent_optional_files_leave_the_process_listed(impl):
    """pid 1 has no io, cgroup or oom_score_adj (a 2.6.18 kernel), pid 210 no
    oom_score_adj, a status that starts with a blank line and a negative
    cancelled_write_bytes, pid 345 no cgroup. None of them has vanished: their
    stat is there."""
    records, cache, misses, vanished, malformed, errors, _ = impl.scan(
        str(MISSING_FILES / "proc"), None, {}, 0, 0, procpid.FD_OFF, 4096)
    assert [r["pid"] for r in records] == [1, 210, 345]
    assert vanished == 0
    assert malformed == {"stat": 0, "status": 0, "io": 0}
    assert errors == [(1, "io", errno.ENOENT)]
    init, nginx, sshd = records
    assert (init["read_bytes"], init["write_bytes"], init["denied"]) == (None, None, [])
    assert (init["uid"], init["voluntary_ctxt_switches"], init["delayacct_blkio_ticks"]) == (0, 4211, 29)
    assert (nginx["uid"], nginx["voluntary_ctxt_switches"], nginx["nonvoluntary_ctxt_switches"]) == (33, 880, 12)
    assert (nginx["read_bytes"], nginx["write_bytes"]) == (4096000, 819200)
    assert (sshd["read_bytes"], sshd["write_bytes"]) == (8192, 0)
    facts = {miss[0]["pid"]: miss[1:4] for miss in misses}
    assert facts == {
        1: (b"/sbin/init\0", errno.ENOENT, errno.ENOENT),
        210: (b"nginx: worker process\0", b"0::/system.slice/nginx.service\n", errno.ENOENT),
        345: (b"/usr/sbin/sshd\0-D\0", errno.ENOENT, b"-1000\n"),
    }
    assert cache == {}


def test_absent_optional_files_through_the_table(impl):
    """None for what an absent file holds, and one counted entry per file and
    error, not one per process."""
    root = HostRoot(proc_root=str(MISSING_FILES / "proc"), sys_root=str(MISSING_FILES / "sys"),
                    rootfs=str(MISSING_FILES))
    table = ProcessTable(root, parsers=impl)
    for _ in range(2):
        problems = Problems()
        section = table.scan(problems)
        pids = {r["pid"]: r for r in section["processes"]}
        assert sorted(pids) == [1, 210, 345]
        assert (section["vanished"], section["denied"]) == (0, 0)
        assert (pids[1]["cmdline"], pids[1]["cgroup"], pids[1]["oom_score_adj"]) == (["/sbin/init"], None, None)
        assert (pids[210]["cgroup"], pids[210]["oom_score_adj"]) == ("/system.slice/nginx.service", None)
        assert (pids[345]["cgroup"], pids[345]["oom_score_adj"]) == (None, -1000)
        assert [pids[pid]["user"] for pid in (1, 210, 345)] == ["root", "www-data", "root"]
        entries = sorted((e["path"].rsplit("/", 2)[-2:], e["kind"], e["count"]) for e in problems.all())
        # The second sample serves the facts from the cache and reports them again.
        assert entries == [(["1", "cgroup"], "missing", 2), (["1", "io"], "missing", 1),
                           (["1", "oom_score_adj"], "missing", 2)]


# ---------------------------------- processes whose stat did not move (status and io reused)

NGINX = 210
RECHECK = 5
# (210 + 1) % 5 != 0: sample 1 is outside nginx's recheck slice; sample 0 is in it.
OUTSIDE, INSIDE = 1, 0


@pytest.fixture
def quiet_tree(tmp_path):
    """A copy of the recorded tree without optional files, to change its files."""
    shutil.copytree(MISSING_FILES / "proc", tmp_path / "proc")
    return tmp_path / "proc"


def rewrite(path, old, new):
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, 1))


def scan_with(twin, root, previous, sample_no, recheck=RECHECK, reads=None):
    hook = None if reads is None else (lambda pid, name: reads.append((pid, name)))
    return twin.scan(str(root), None, {}, sample_no, 0, procpid.FD_OFF, 4096,
                     procpid.DEFAULT_READ_CAP, hook, previous, recheck)


def by_pid(result):
    return {record["pid"]: record for record in result[0]}


def activity(record):
    return (record["uid"], record["voluntary_ctxt_switches"], record["read_bytes"])


def test_an_unchanged_process_is_not_read_for_status_and_io(quiet_tree):
    """nginx's status and io change while its stat stays: outside its recheck
    slice both twins keep the previous values without reading either file;
    inside it, or with the reuse off, they read the new ones. pid 1, whose io
    is absent, is read whole every time (its error is reported again)."""
    module = compiled()
    first = scan_with(procpid, quiet_tree, None, OUTSIDE)
    assert first == scan_with(module, quiet_tree, None, OUTSIDE)
    previous = first[6]
    assert activity(previous[NGINX][1]) == (33, 880, 4096000)
    rewrite(quiet_tree / "210" / "status", b"Uid:\t33\t33", b"Uid:\t34\t34")
    rewrite(quiet_tree / "210" / "status", b"voluntary_ctxt_switches:\t880", b"voluntary_ctxt_switches:\t990")
    rewrite(quiet_tree / "210" / "io", b"read_bytes: 4096000", b"read_bytes: 5000000")
    results = []
    for twin in (module, procpid):
        reads = []
        result = scan_with(twin, quiet_tree, previous, OUTSIDE, reads=reads)
        results.append(result)
        assert by_pid(result)[NGINX] == previous[NGINX][1]
        assert [name for pid, name in reads if pid == NGINX] == ["stat", "cmdline", "cgroup", "oom_score_adj"]
        assert (1, "io") in reads and (1, "status") in reads
        assert result[5] == [(1, "io", errno.ENOENT)]
        for sample_no, recheck in ((INSIDE, RECHECK), (OUTSIDE, 0)):
            assert activity(by_pid(scan_with(twin, quiet_tree, previous, sample_no, recheck))[NGINX]) == \
                (34, 990, 5000000)
    assert results[0] == results[1]


@pytest.mark.parametrize("old, new", [
    (b" 120 45 ", b" 121 45 "),                  # utime: it ran
    (b" 2301 0 3 ", b" 2302 0 3 "),              # minflt
    (b"(nginx) S ", b"(nginx) R "),              # state
    (b" 60870656 1536 ", b" 60870656 1537 "),    # rss
    (b" 2 0 5120 ", b" 3 0 5120 "),              # num_threads
    (b" 0 5120 ", b" 0 5121 "),                  # start time: a new process on a reused pid
])
def test_a_process_whose_stat_moved_is_read_whole(quiet_tree, old, new):
    module = compiled()
    previous = scan_with(procpid, quiet_tree, None, OUTSIDE)[6]
    rewrite(quiet_tree / "210" / "stat", old, new)
    rewrite(quiet_tree / "210" / "status", b"voluntary_ctxt_switches:\t880", b"voluntary_ctxt_switches:\t990")
    results = [scan_with(twin, quiet_tree, previous, OUTSIDE) for twin in (module, procpid)]
    assert results[0] == results[1]
    assert by_pid(results[0])[NGINX]["voluntary_ctxt_switches"] == 990


def test_previous_denied_and_incomplete_groups(quiet_tree):
    """A previous record with status denied lends that denial (and its None
    fields); one whose status lacked a field is read again, and its malformed
    line counted again."""
    module = compiled()
    stat_bytes, nginx = scan_with(procpid, quiet_tree, None, OUTSIDE)[6][NGINX]
    denied = dict(nginx, uid=None, voluntary_ctxt_switches=None, nonvoluntary_ctxt_switches=None,
                  denied=["status", "cgroup"])
    results = [scan_with(twin, quiet_tree, {NGINX: (stat_bytes, denied)}, OUTSIDE)
               for twin in (module, procpid)]
    assert results[0] == results[1]
    nginx = by_pid(results[0])[NGINX]
    assert (nginx["uid"], nginx["read_bytes"], nginx["denied"]) == (None, 4096000, ["status"])
    rewrite(quiet_tree / "210" / "status", b"voluntary_ctxt_switches:\t880", b"voluntary_ctxt_switches:\tx")
    damaged = scan_with(procpid, quiet_tree, None, OUTSIDE)
    assert by_pid(damaged)[NGINX]["voluntary_ctxt_switches"] is None
    for twin in (module, procpid):
        assert scan_with(twin, quiet_tree, damaged[6], OUTSIDE)[4]["status"] == 1


def test_reuse_is_bounded_through_the_table(quiet_tree, impl):
    """Through ProcessTable: an unchanged process's record is the previous
    object, equal to what a fresh table reads; a status change that moves no
    stat field shows within recheck_every samples, and not before nginx's
    slice comes; a cgroup move shows at the facts' refresh slice."""
    root = HostRoot(proc_root=str(quiet_tree))
    table = ProcessTable(root, parsers=impl, recheck_every=RECHECK, refresh_every=7)
    first = {r["pid"]: r for r in table.scan(Problems())["processes"]}
    second = table.scan(Problems())["processes"]
    assert [r is first[r["pid"]] for r in second] == [False, True, True]   # pid 1: its io is absent
    assert second == ProcessTable(root, parsers=impl, recheck_every=0).scan(Problems())["processes"]
    rewrite(quiet_tree / "210" / "status", b"voluntary_ctxt_switches:\t880", b"voluntary_ctxt_switches:\t990")
    rewrite(quiet_tree / "210" / "cgroup", b"nginx.service", b"moved.service")
    seen = []
    for _ in range(RECHECK - 1):
        nginx = table.scan(Problems())["processes"][1]
        seen.append((nginx["voluntary_ctxt_switches"], nginx["cgroup"], nginx is first[NGINX]))
    # samples 2..4 are outside the slice (210 % 5 == 0), sample 5 is in it;
    # (210 + 3) % 7 == 3, (210 + 4) % 7 == 4: the facts' slice is sample 7
    assert seen == ([(880, "/system.slice/nginx.service", True)] * 3
                    + [(990, "/system.slice/nginx.service", False)])
    for _ in range(2):
        nginx = table.scan(Problems())["processes"][1]
    assert (nginx["voluntary_ctxt_switches"], nginx["cgroup"]) == (990, "/system.slice/moved.service")


def test_stopped_processes_are_read_once_then_reused(sleepers, impl):
    """Live: stopped children keep their stat, so the table's next sample
    reads only their stat and fd count, and gives the same record objects."""
    table = ProcessTable(HostRoot(), parsers=impl, recheck_every=10 ** 9)
    for _ in range(20):
        first = table.scan(Problems(), pids=sleepers)["processes"]
        reads = []
        again = table.scan(Problems(), pids=sleepers,
                           race_hook=lambda pid, name: reads.append(name))["processes"]
        if all(a is b for a, b in zip(first, again)):
            break
    assert len(again) == 3 and all(a is b for a, b in zip(first, again))
    assert sorted(set(reads)) == ["fd", "stat"] if table.fd_mode != procpid.FD_OFF else ["stat"]


# ---------------------------------------------------------------- the scanner over live processes

SLEEPER = "import sys; sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.read()"


@pytest.fixture
def sleepers():
    """Three children (one with a 300 KB command line), stopped with SIGSTOP so
    that their counters stay still while both twins read them."""
    procs = []
    try:
        for argv in (["a"], ["b c", "(d)"], ["x" * 1000] * 300):
            proc = subprocess.Popen([sys.executable, "-c", SLEEPER] + argv,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            procs.append(proc)
            assert proc.stdout.readline() == b"ready\n"
            os.kill(proc.pid, signal.SIGSTOP)
            os.waitpid(proc.pid, os.WUNTRACED)
        yield [proc.pid for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
            proc.stdin.close()
            proc.stdout.close()


def stable_pair(compiled_scan, pure_scan):
    """Both twins' results of the same processes, taken between two compiled
    scans that agree, so nothing moved while the pure one read (a stopped
    task may still account its last switch just after it is reported stopped)."""
    for _ in range(20):
        before = compiled_scan()
        pure = pure_scan()
        after = compiled_scan()
        if before == after:
            return before, pure
    pytest.fail("the processes kept changing")


def test_live_scans_equal_in_both_twins(sleepers):
    module = compiled()
    for fd_mode in (procpid.FD_SIZE, procpid.FD_LIST, procpid.FD_OFF):
        a, b = stable_pair(lambda: module.scan("/proc", sleepers, {}, 0, 0, fd_mode, 4096),
                           lambda: procpid.scan("/proc", sleepers, {}, 0, 0, fd_mode, 4096))
        assert a == b
        assert len(a[0]) == 3 and len(a[2]) == 3
        assert [r["state"] for r in a[0]] == ["T"] * 3
    assert len(a[2][2][1]) > 300000          # the big cmdline grew the buffer


def test_read_cap_is_an_error_in_both_twins(sleepers):
    module = compiled()
    a = module.scan(b"/proc", sleepers, {}, 0, 0, procpid.FD_OFF, 4096, 100)
    b = procpid.scan(b"/proc", sleepers, {}, 0, 0, procpid.FD_OFF, 4096, 100)
    assert a == b
    assert a[0] == [] and [e[1:] for e in a[5]] == [("stat", 27)] * 3     # EFBIG


def test_cache_validation_in_both_twins(sleepers):
    module = compiled()
    first = procpid.scan("/proc", sleepers, {}, 0, 0, procpid.FD_OFF, 4096)
    records = {r["pid"]: r for r in first[0]}
    args = {m[0]["pid"]: m[4:] for m in first[2]}
    facts = {"cmdline": ["cached"], "user": "u", "cgroup": "/c", "oom_score_adj": 7}

    def entry(pid, **change):
        r = records[pid]
        fields = dict(start=r["start_time"], comm=r["comm"], uid=r["uid"],
                      arg_start=args[pid][0], arg_end=args[pid][1])
        fields.update(change)
        return (fields["start"], fields["comm"], fields["uid"], fields["arg_start"],
                fields["arg_end"], facts, ("cgroup",))

    hit, reused, execed = sleepers
    cache = {hit: entry(hit), reused: entry(reused, start=records[reused]["start_time"] - 1),
             execed: entry(execed, arg_end=args[execed][1] + 1)}
    for module_ in (module, procpid):
        records_, new_cache, misses, *_ = module_.scan("/proc", sleepers, cache, 0, 0,
                                                      procpid.FD_OFF, 4096)
        got = {r["pid"]: r for r in records_}
        assert got[hit]["cmdline"] == ["cached"] and got[hit]["denied"] == ["cgroup"]
        assert new_cache == {hit: cache[hit]}
        assert sorted(m[0]["pid"] for m in misses) == sorted([reused, execed])
        assert got[reused]["cmdline"] is None
        # the refresh slice turns a hit into a miss
        refresh = 7
        sample = (refresh - hit % refresh) % refresh
        _, new_cache, misses, *_ = module_.scan("/proc", [hit], cache, sample, refresh,
                                               procpid.FD_OFF, 4096)
        assert new_cache == {} and len(misses) == 1


def test_list_pids_equal_in_both_twins():
    module = compiled()
    assert module.list_pids("/proc")[:3] == procpid.list_pids("/proc")[:3] == [1, 2, 3]
    assert module.list_pids(str(FIXTURES)) == procpid.list_pids(str(FIXTURES))
    with pytest.raises(OSError):
        module.list_pids(str(FIXTURES / "missing"))
    with pytest.raises(OSError):
        procpid.list_pids(str(FIXTURES / "missing"))


def test_pids_that_cannot_exist_are_vanished_in_both_twins():
    module = compiled()
    for twin in (module, procpid):
        records, cache, misses, vanished, _, errors, seen = twin.scan(
            "/proc", [-5, 0, 2 ** 40], {}, 0, 0, procpid.FD_OFF, 4096)
        assert (records, cache, misses, vanished, errors, seen) == ([], {}, [], 3, [], {})


def test_a_root_with_a_nul_byte_is_refused_by_both_twins():
    module = compiled()
    for twin in (module, procpid):
        with pytest.raises(ValueError):
            twin.scan("/pr\0oc", [1], {})
        with pytest.raises(ValueError):
            twin.list_pids("/pr\0oc")


def test_live_twin_is_reported():
    from hostdiag import parsers
    impl, reason = parsers.TWINS["hostdiag._procpid"]
    live = {"compiled": "hostdiag._procpid", "pure": "hostdiag.parsers.procpid"}[impl]
    assert parsers.live_procpid.__name__ == live
    if not parsers.pure_forced():
        assert impl == "compiled", reason
