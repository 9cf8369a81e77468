"""Process-table benchmarks: 1,000 and 5,000 extra processes, side by side.

    cd /tmp && python -m pytest /work/main/benchmarks/test_bench_processes.py \\
        --benchmark-only --benchmark-group-by=group --benchmark-columns=min,median,mean,rounds -s

Contestants, each doing one sample of every process on the host (the extra
sleeping processes of ``procload.ProcessLoad`` plus the host's own):

floor            the raw-read floor: the files the table reads in a steady
                 sample, read with os.open/os.read into one reused buffer
                 through a /proc/PID descriptor, no parsing: stat, status, io,
                 a stat() of fd/, and cmdline, cgroup, oom_score_adj for the
                 pids of this sample's refresh slice (1/60 of them)
table-compiled   ProcessTable over the compiled twin, steady (cache warm)
table-pure       ProcessTable over the pure twin, steady
psutil           psutil.process_iter with the equivalent attrs, steady (its
                 Process objects are cached between calls)
floor-cold,      one-shot: a fresh table each round (what `diag` does), and the
table-cold       floor of the same files (cmdline, cgroup, oom_score_adj of
                 every pid too)

The timer is the CPU time of this process (time.process_time: user + system,
so the kernel's work to format the files counts); wall time on this shared
2-vCPU machine is mostly time spent waiting for a CPU. ``test_goals`` runs the
contestants in back-to-back pairs and checks the medians of the pair ratios:
table ≤ 1.10 × floor, psutil ≥ 2.5 × table.
"""

import os
import statistics
import sys
import time

import psutil
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchsupport import compiled_twin  # noqa: E402
from procload import ProcessLoad  # noqa: E402

from hostdiag.sources.hostroot import HostRoot  # noqa: E402
from hostdiag.parsers import procpid  # noqa: E402
from hostdiag.sources.problems import Problems  # noqa: E402
from hostdiag.sources.proc_pid import DEFAULT_REFRESH_EVERY, ProcessTable  # noqa: E402

SCALES = (1000, 5000)
PSUTIL_ATTRS = ["pid", "ppid", "name", "cmdline", "status", "uids", "create_time",
                "cpu_times", "memory_info", "num_threads", "num_ctx_switches",
                "io_counters", "nice"]
SAMPLE_FILES = ("stat", "status", "io")
FACT_FILES = ("cmdline", "cgroup", "oom_score_adj")
_O = os.O_RDONLY | os.O_CLOEXEC


class RawReadFloor:
    """The table's reads without the table: same files, same descriptors, no parsing."""

    def __init__(self, root, refresh_every=DEFAULT_REFRESH_EVERY, cold=False):
        self.proc_root = root.proc_root
        self.refresh_every = refresh_every
        self.cold = cold
        self.samples = 0
        self.buf = bytearray(64 * 1024)

    def _read(self, dirfd, name):
        try:
            fd = os.open(name, _O, dir_fd=dirfd)
        except OSError:
            return
        try:
            os.readv(fd, [self.buf])
        except OSError:
            pass
        finally:
            os.close(fd)

    def sample(self):
        sample_no = self.samples
        self.samples += 1
        for name in os.listdir(self.proc_root):
            if not name.isdigit():
                continue
            try:
                dirfd = os.open(self.proc_root + "/" + name, _O | os.O_DIRECTORY)
            except OSError:
                continue
            try:
                for file in SAMPLE_FILES:
                    self._read(dirfd, file)
                try:
                    os.stat("fd", dir_fd=dirfd)
                except OSError:
                    pass
                if self.cold or (int(name) + sample_no) % self.refresh_every == 0:
                    for file in FACT_FILES:
                        self._read(dirfd, file)
            finally:
                os.close(dirfd)


def psutil_sample():
    return list(psutil.process_iter(PSUTIL_ATTRS, ad_value=None))


def contestants():
    """name → a callable doing one sample; steady ones are warmed here."""
    root = HostRoot()
    compiled_table = ProcessTable(root, parsers=compiled_twin("procpid"))
    pure_table = ProcessTable(root, parsers=procpid)
    floor = RawReadFloor(root)
    for warm in (compiled_table.scan, pure_table.scan):
        warm(Problems())
    psutil_sample()
    return {
        "floor": floor.sample,
        "table-compiled": lambda: compiled_table.scan(Problems()),
        "table-pure": lambda: pure_table.scan(Problems()),
        "psutil": psutil_sample,
        "floor-cold": RawReadFloor(root, cold=True).sample,
        "table-cold": lambda: ProcessTable(root, parsers=compiled_twin("procpid")).scan(Problems()),
    }


@pytest.fixture(scope="module", params=SCALES, ids=lambda n: "%d-extra" % n)
def load(request):
    with ProcessLoad(request.param) as running:
        yield running


@pytest.fixture(scope="module")
def runners(load):
    return contestants()


@pytest.mark.benchmark(timer=time.process_time)
@pytest.mark.parametrize("name", ["floor", "table-compiled", "table-pure", "psutil",
                                  "floor-cold", "table-cold"])
def test_sample(benchmark, load, runners, name):
    benchmark.group = "processes %d extra" % load.count
    benchmark.extra_info["pids"] = len(procpid.list_pids(HostRoot().proc_root))
    rounds = 15 if load.count <= 1000 else 7
    benchmark.pedantic(runners[name], rounds=rounds, warmup_rounds=1)


def paired_ratios(runners, numerator, denominator, rounds):
    """``numerator / denominator`` CPU-time ratios of back-to-back runs (the
    order alternating), with both runs' wall times: pairing cancels the
    drift of the load other processes put on this shared machine."""
    ratios, walls = [], []
    for i in range(rounds):
        times = {}
        for name in ((numerator, denominator) if i % 2 else (denominator, numerator)):
            w0, c0 = time.perf_counter(), time.process_time()
            runners[name]()
            times[name] = (time.process_time() - c0, time.perf_counter() - w0)
        ratios.append(times[numerator][0] / times[denominator][0])
        walls.append(times[numerator][1] / times[denominator][1])
    return ratios, walls


def quartiles(values):
    q = statistics.quantiles(values, n=4)
    return q[0], statistics.median(values), q[2]


def test_goals(load, runners, capsys):
    """table ≤ 1.10 × floor and psutil ≥ 2.5 × table, as medians of paired ratios."""
    small = load.count <= 1000
    table, table_wall = paired_ratios(runners, "table-compiled", "floor", 40 if small else 30)
    psutil_, psutil_wall = paired_ratios(runners, "psutil", "table-compiled", 12 if small else 6)
    with capsys.disabled():
        print("\n%d extra: table/floor CPU %.3f %.3f %.3f (quartiles), wall median %.3f; "
              "psutil/table CPU %.2f %.2f %.2f, wall median %.2f" % (
                  (load.count,) + quartiles(table) + (statistics.median(table_wall),)
                  + quartiles(psutil_) + (statistics.median(psutil_wall),)))
    assert statistics.median(table) <= 1.10
    assert statistics.median(psutil_) >= 2.5
