"""Cgroup-table benchmark: 500 real cgroups, the table against the raw read of its files.

    cd /tmp && python -m pytest /work/main/benchmarks/test_bench_cgroups.py \\
        --benchmark-only --benchmark-group-by=group --benchmark-columns=min,median,mean,rounds -s

Setup: ``/hd-bench-<random>`` and 499 children under it, made in every v1
hierarchy the table reads (cpu, cpuacct, memory, blkio, pids) and in the
unified tree, so 500 cgroups plus the host's own. Removed at the end.

Contestants, each one sample of every cgroup on the host:

floor            the raw read of the files one table sample reads (recorded by
                 wrapping the table's reader during a sample): os.open of the
                 full path, os.read to EOF into one reused buffer, os.close;
                 no parsing, no walk
floor+listing    the same plus an ``os.scandir`` of every directory the table
                 lists (the ones with subdirectories: the walk)
table-compiled   ``CgroupTable.collect`` over the compiled reader
                 (``hostdiag._cgroup``)
table-pure       the same over the pure twin (``hostdiag.parsers.cgroup``)

The timer is the CPU time of this process (time.process_time: user +
system, so the kernel's work to format the files counts). ``test_goal`` runs
the four in back-to-back rounds and checks the median of the per-round
ratios: table-compiled ≤ 1.3 × floor (table-pure is printed, not checked).
"""

import os
import statistics
import time
import uuid

import pytest

from hostdiag.parsers import cgroup as pure_reader
from hostdiag.sources.cgroups import CgroupTable
from hostdiag.sources.hostroot import HostRoot
from hostdiag.sources.problems import Problems

CGROUPS = 500
GOAL = 1.3
ROUNDS = int(os.environ.get("BENCH_CGROUP_ROUNDS", "30"))
_O = os.O_RDONLY | os.O_CLOEXEC

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="making cgroups needs root")


class RecordingReader:
    """A reader twin that notes the files each read_dir call read and the
    directories the table then lists (those whose link count is not 2)."""

    def __init__(self, reader):
        self.reader = reader
        self.files = []
        self.listed = []

    def read_dir(self, directory, specs, cap):
        result = self.reader.read_dir(directory, specs, cap)
        if result is not None:
            nlink, _, _, _, errors = result
            failed = {index for index, _ in errors}
            self.files.extend(directory + b"/" + spec[0] for index, spec in enumerate(specs)
                              if index not in failed)
            if nlink != 2:
                self.listed.append(directory)
        return result


class RawFloor:
    """The table's reads without the table: same files (and, with ``listing``,
    the same directory listings), no parsing, no structure built."""

    def __init__(self, files, directories, listing):
        self.files = files
        self.directories = directories if listing else ()
        self.buf = bytearray(64 * 1024)

    def __call__(self):
        for directory in self.directories:
            with os.scandir(directory) as entries:
                for entry in entries:
                    entry.is_dir(follow_symlinks=False)
        buf = [self.buf]
        for path in self.files:
            fd = os.open(path, _O)
            try:
                while os.readv(fd, buf):
                    pass
            finally:
                os.close(fd)


@pytest.fixture(scope="module")
def cgroups():
    """The 500 cgroups, made in every hierarchy the table reads; yields the
    table over the compiled reader."""
    compiled = pytest.importorskip("hostdiag._cgroup", reason="the compiled reader is not built")
    table = CgroupTable(HostRoot(), reader=compiled)
    problems = Problems()
    table.hierarchies = table.probe(problems)
    if not any(h.kind == "cgroup" for h in table.hierarchies):
        pytest.skip("no v1 hierarchy mounted: %s" % problems.all())
    top = "/hd-bench-%s" % uuid.uuid4().hex[:10]
    names = [top] + ["%s/g%03d" % (top, i) for i in range(CGROUPS - 1)]
    made = []
    try:
        for hierarchy in table.hierarchies:
            for name in names:
                os.mkdir(hierarchy.base + name)
                made.append(hierarchy.base + name)
        yield table, top
    finally:
        for directory in reversed(made):
            os.rmdir(directory)


def _recorded(table):
    """(files, listed directories, section) of one steady sample."""
    recorder = RecordingReader(table.reader)
    recorded = CgroupTable(table.root, max_depth=table.max_depth, max_cgroups=table.max_cgroups,
                           reader=recorder)
    recorded.collect(Problems())
    recorder.files.clear()
    recorder.listed.clear()
    section = recorded.collect(Problems())
    return recorder.files, recorder.listed, section


def test_setup_is_500_cgroups(cgroups):
    table, top = cgroups
    files, directories, section = _recorded(table)
    mine = [row for row in section["cgroups"] if row["path"].startswith(top)]
    assert len(mine) == CGROUPS
    print("\n%d cgroups in the sample, %d files, %d directories, %d hierarchies"
          % (len(section["cgroups"]), len(files), len(directories), len(table.hierarchies)))


@pytest.mark.benchmark(group="cgroup table, 500 cgroups")
@pytest.mark.parametrize("contestant", ["floor", "floor+listing", "table-compiled", "table-pure"])
def test_bench_cgroups(benchmark, cgroups, contestant):
    table, _ = cgroups
    files, directories, _ = _recorded(table)
    if contestant == "table-compiled":
        run = lambda: table.collect(Problems())  # noqa: E731
    elif contestant == "table-pure":
        pure = CgroupTable(table.root, reader=pure_reader)
        run = lambda: pure.collect(Problems())  # noqa: E731
    else:
        run = RawFloor(files, directories, listing=contestant == "floor+listing")
    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=2)


def _cpu(run):
    start = time.process_time()
    run()
    return time.process_time() - start


def test_goal(cgroups):
    table, _ = cgroups
    files, directories, _ = _recorded(table)
    floor = RawFloor(files, directories, listing=False)
    floor_listing = RawFloor(files, directories, listing=True)
    pure = CgroupTable(table.root, reader=pure_reader)
    runs = (floor, floor_listing, lambda: table.collect(Problems()), lambda: pure.collect(Problems()))
    for run in runs:
        run()
    costs = [[_cpu(run) for run in runs] for _ in range(ROUNDS)]
    ratio = statistics.median(c[2] / c[0] for c in costs)
    print("\n%d files; median CPU ms: floor %.2f, floor+listing %.2f, table-compiled %.2f, table-pure %.2f; "
          "table-compiled/floor %.2f, table-compiled/(floor+listing) %.2f, table-pure/floor %.2f "
          "(goal: table-compiled <= %.1f x floor)"
          % (len(files), *(1000 * statistics.median(c[i] for c in costs) for i in range(4)),
             ratio, statistics.median(c[2] / c[1] for c in costs),
             statistics.median(c[3] / c[0] for c in costs), GOAL))
    assert ratio <= GOAL
