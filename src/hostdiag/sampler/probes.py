"""The schedule of the availability probes: a thread that starts each probe on
its own interval in a small pool of workers, apart from the sampling thread.

Bounds (docs/availability.md):

- ``workers`` threads run checks; at most one run of a probe is out at a time.
- A probe whose turn comes while its previous run is still out is **skipped**
  (counted in ``skipped``), never queued: runs do not pile up behind a slow
  service, and a sample never waits for a probe. A turn that finds every
  worker busy waits for one, until the probe's next turn is due; then it is
  skipped too.
- A run still out at its deadline (start + the probe's timeout) gets a
  ``timeout`` result then; its worker counts as busy until the check returns
  (every check but ``dns`` ends by itself near its timeout).
- Turn k of a probe is due at start + k x interval on the monotonic clock;
  turns that passed while the scheduler could not start them are skipped and
  counted, never run late in a burst.

Each result is handed to ``on_result`` on the scheduler's thread, and kept as
the probe's latest (:meth:`ProbeRunner.latest`). A result is a dict of the
``PROBE_RESULT`` record (src/hostdiag/model/records.py).
"""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from hostdiag.sources.probes import Outcome, check

log = logging.getLogger("hostdiag.sampler.probes")


def result_of(probe, outcome, latency_ms, at_ns):
    """A PROBE_RESULT record (plain dict) for one run of ``probe``."""
    return {"name": probe.name, "kind": probe.kind, "target": probe.target, "ok": outcome.ok,
            "latency_ms": latency_ms, "error": outcome.error, "detail": outcome.detail, "at_ns": at_ns}


class _Run:
    """One run out in the pool."""

    __slots__ = ("future", "started_mono", "started_wall_ns", "deadline", "answered")

    def __init__(self, future, started_mono, started_wall_ns, deadline):
        self.future = future
        self.started_mono = started_mono
        self.started_wall_ns = started_wall_ns
        self.deadline = deadline
        self.answered = False  # a timeout result was given for it already


class ProbeRunner:
    """Runs ``probes`` (ProbeEntry tuples of the settings) against ``root``
    with ``workers`` threads until :meth:`stop`. ``on_result(probe, result)``
    is called on the scheduler's thread for each result, in order per probe."""

    def __init__(self, probes, root, workers, on_result=None):
        self.probes = tuple(probes)
        self._by_name = {p.name: p for p in self.probes}
        self.root = root
        self.workers = workers
        self.on_result = on_result
        self.runs = 0
        self.skipped = 0
        self.timeouts = 0
        self._latest = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._out = {}          # probe name -> _Run
        self._pool = None
        self._thread = None

    # -- what the agent reads (any thread) -------------------------------------

    def latest(self):
        """The newest result of each probe that has one, in the settings' order."""
        with self._lock:
            return [self._latest[p.name] for p in self.probes if p.name in self._latest]

    def stats(self):
        """``{"probes", "workers", "runs", "skipped", "timeouts"}``: counts since start."""
        with self._lock:
            return {"probes": len(self.probes), "workers": self.workers, "runs": self.runs,
                    "skipped": self.skipped, "timeouts": self.timeouts}

    # -- lifecycle -------------------------------------------------------------

    def start(self):
        if not self.probes:
            return
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="probe")
        self._thread = threading.Thread(target=self._loop, name="probes", daemon=True)
        self._thread.start()

    def stop(self):
        """Stop scheduling; runs still out are abandoned (their threads end with their checks)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    # -- the scheduler's thread ------------------------------------------------

    def _loop(self):
        anchor = time.monotonic()
        turns = {p.name: 0 for p in self.probes}
        while not self._stopping.is_set():
            now = time.monotonic()
            self._collect(now)
            wake_at = now + 3600.0
            for probe in self.probes:
                due = anchor + turns[probe.name] * probe.interval
                if due <= now:
                    # Turns wholly passed (the next one is due too) are skipped.
                    passed = int((now - due) // probe.interval)
                    if passed:
                        self._skip(passed)
                        turns[probe.name] += passed
                    if probe.name in self._out:
                        self._skip(1)          # its previous run is still out
                        turns[probe.name] += 1
                    elif len(self._out) < self.workers:
                        self._start(probe, now)
                        turns[probe.name] += 1
                    # else: every worker is busy; the turn waits for one until the next turn is due
                    due = anchor + turns[probe.name] * probe.interval
                    if due <= now:
                        due = anchor + (turns[probe.name] + 1) * probe.interval
                wake_at = min(wake_at, due)
            for run in self._out.values():
                if not run.answered:
                    wake_at = min(wake_at, run.deadline)
            self._wake.wait(max(0.0, wake_at - time.monotonic()))
            self._wake.clear()

    def _skip(self, count):
        with self._lock:
            self.skipped += count

    def _start(self, probe, now):
        wall_ns = time.time_ns()
        try:
            future = self._pool.submit(self._timed, probe)
        except RuntimeError:  # the pool shut down under us: the agent is stopping
            return
        self._out[probe.name] = _Run(future, now, wall_ns, now + probe.timeout)
        future.add_done_callback(lambda _: self._wake.set())

    def _timed(self, probe):
        """The check's outcome and its duration in ms (on a worker thread)."""
        started = time.monotonic()
        outcome = check(probe, self.root)
        return outcome, (time.monotonic() - started) * 1000.0

    def _collect(self, now):
        """Results of the runs that ended, and timeouts of those past their deadline."""
        for name, run in list(self._out.items()):
            probe = self._by_name[name]
            if run.future.done():
                del self._out[name]
                if run.answered:
                    continue
                try:
                    outcome, latency_ms = run.future.result()
                except Exception as exc:  # noqa: BLE001 - a defect in a check: logged, counted as the probe failing
                    log.error("probe %s: %s: %s", name, type(exc).__name__, exc)
                    outcome, latency_ms = Outcome(False, "error", "%s: %s" % (type(exc).__name__, exc)), None
                if outcome.error == "timeout":
                    latency_ms = None
                self._deliver(probe, result_of(probe, outcome, latency_ms, run.started_wall_ns), timeout=(
                    outcome.error == "timeout"))
            elif not run.answered and now >= run.deadline:
                run.answered = True
                outcome = Outcome(False, "timeout", "no answer within %gs" % probe.timeout)
                self._deliver(probe, result_of(probe, outcome, None, run.started_wall_ns), timeout=True)

    def _deliver(self, probe, result, timeout):
        with self._lock:
            self.runs += 1
            if timeout:
                self.timeouts += 1
            self._latest[probe.name] = result
        if self.on_result is not None:
            try:
                self.on_result(probe, result)
            except Exception:  # noqa: BLE001 - the schedule outlives a failing consumer; logged
                log.exception("probe %s: handling its result failed", probe.name)
