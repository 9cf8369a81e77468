"""How long a process scan keeps another Python thread waiting (issue 7).

The agent runs its server and its timers in threads next to the sampler. A
thread that wants the GIL while the compiled scan runs waits until the scan
lets go of it. Measured here: a ticker thread asks to wake every
``TICK_S`` (1 ms) and records how late each wake-up is; its worst lateness
over one scan of the process table, with ``EXTRA`` (5,000) extra sleeping
processes of ``procload.ProcessLoad`` running, is the longest any other thread
waited. The same ticker over the same length of time without a scan gives the
machine's own noise.

Variants (group ``gil 5000 extra``), each run ``ROUNDS`` times, the median and
the maximum of the worst lateness reported in ``extra_info`` and printed
(run with ``-s`` to see the lines):

idle            the ticker alone, for as long as a steady scan takes
cpu-without-gil the control: this thread busy in C without the GIL (sha256 of
                a buffer), so what is left is the ticker waiting for a CPU,
                not for the GIL (on a loaded machine, most of it)
table-steady    ``ProcessTable.scan`` over the compiled twin, facts cached
table-cold      the same with an empty cache: cmdline, cgroup and
                oom_score_adj of every process read too

Run: ``python -m pytest benchmarks/test_bench_gil.py -s`` (root; about 30 s).
"""

import hashlib
import os
import statistics
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchsupport import compiled_twin  # noqa: E402
from procload import ProcessLoad  # noqa: E402

from hostdiag.sources.hostroot import HostRoot  # noqa: E402
from hostdiag.sources.problems import Problems  # noqa: E402
from hostdiag.sources.proc_pid import ProcessTable  # noqa: E402

EXTRA = 5000
TICK_S = 0.001
ROUNDS = 9
# hashlib lets go of the GIL while it hashes more than 2 KiB.
CONTROL_BYTES = 32 << 20


class Ticker:
    """A thread that wakes every ``TICK_S`` and keeps its worst lateness (s)."""

    def __init__(self):
        self.worst = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        due = time.monotonic() + TICK_S
        while not self._stop.is_set():
            time.sleep(max(0.0, due - time.monotonic()))
            now = time.monotonic()
            self.worst = max(self.worst, now - due)
            due = now + TICK_S

    def __enter__(self):
        self._thread.start()
        # Let the ticker run a few periods before the measured work starts.
        time.sleep(10 * TICK_S)
        self.worst = 0.0
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def worst_lateness(work):
    """(worst lateness of the ticker, wall seconds of ``work``), in seconds."""
    with Ticker() as ticker:
        started = time.perf_counter()
        work()
        took = time.perf_counter() - started
    return ticker.worst, took


@pytest.fixture(scope="module")
def load():
    with ProcessLoad(EXTRA) as running:
        yield running


@pytest.fixture(scope="module")
def works(load):
    root = HostRoot()
    module = compiled_twin("procpid")
    steady = ProcessTable(root, parsers=module)
    steady.scan(Problems())
    started = time.perf_counter()
    steady.scan(Problems())
    scan_s = time.perf_counter() - started
    control = bytes(CONTROL_BYTES)
    return {
        "idle": lambda: time.sleep(scan_s),
        "cpu-without-gil": lambda: hashlib.sha256(control).digest(),
        "table-steady": lambda: steady.scan(Problems()),
        "table-cold": lambda: ProcessTable(root, parsers=module).scan(Problems()),
    }


@pytest.mark.parametrize("name", ["idle", "cpu-without-gil", "table-steady", "table-cold"])
def test_worst_lateness(benchmark, works, name):
    benchmark.group = "gil %d extra" % EXTRA
    benchmark.extra_info["variant"] = name
    measured = []

    def one():
        measured.append(worst_lateness(works[name]))

    benchmark.pedantic(one, rounds=ROUNDS, warmup_rounds=1)
    worst = [late for late, _ in measured[-ROUNDS:]]
    took = statistics.median(took for _, took in measured[-ROUNDS:])
    benchmark.extra_info["worst_lateness_ms_median"] = round(statistics.median(worst) * 1e3, 2)
    benchmark.extra_info["worst_lateness_ms_max"] = round(max(worst) * 1e3, 2)
    print("\n%s: %.1f ms median; worst lateness of a 1 ms ticker: median %.2f ms, max %.2f ms"
          % (name, took * 1e3, statistics.median(worst) * 1e3, max(worst) * 1e3))
