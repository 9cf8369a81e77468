"""The agent's availability probes and their SLOs, wired together
(docs/availability.md): the runner (sampler/probes.py) runs the probes of
``probe.list`` on its own threads; each result is counted in the probe's SLO
counters (derive/slo.py); each sample carries the latest results
(``probes``) and the SLO summary (``slo``); the counters are saved in the
spool directory (store/slo_state.py) once a minute and at stop.

Everything a sample asks for is read under one lock that the runner's thread
holds only to count a result: a sample never waits for a probe.
"""

import logging
import threading
import time

from hostdiag.derive.slo import SloCounters, is_good, minute_of, summarize
from hostdiag.sampler.probes import ProbeRunner
from hostdiag.store.slo_state import StateError, load_state, save_state, state_path

log = logging.getLogger("hostdiag.apps.availability")

# Seconds between two saves of the SLO counters (and one more at stop).
SAVE_EVERY_S = 60.0


class Availability:
    """The probes of ``config.probe`` against ``root``; the SLO counters are
    kept in ``config.spool.dir`` when the spool is on, else in memory only."""

    def __init__(self, config, root):
        self.probes = config.probe.list
        self.path = state_path(config.spool.dir) if config.spool.enabled else None
        self._lock = threading.Lock()
        self.counters = {p.name: SloCounters() for p in self.probes}
        self._last_save = time.monotonic()
        self._dirty = False
        # probe name -> ((counters id, counters.changes), summary): a summary is made
        # again only when its counters changed (a summary is read-only once in a sample).
        self._summaries = {}
        self.runner = ProbeRunner(self.probes, root, config.probe.workers, on_result=self._count)

    def start(self):
        if not self.probes:
            return
        self._load()
        self.runner.start()
        log.info("%d probes, %d workers", len(self.probes), self.runner.workers)

    def _load(self):
        if self.path is None:
            return
        try:
            saved = load_state(self.path)
        except StateError as exc:
            log.warning("SLO state not used, counting afresh: %s", exc)
            return
        for name, counters in saved.items():
            if name in self.counters:
                self.counters[name] = counters

    def _count(self, probe, result):
        """Count one result (on the runner's thread); save when a minute has passed."""
        good = is_good(result["ok"], result["latency_ms"], None if probe.latency is None else probe.latency * 1000.0)
        with self._lock:
            self.counters[probe.name].record(minute_of(result["at_ns"]), good)
            self._dirty = True
        if time.monotonic() - self._last_save >= SAVE_EVERY_S:
            self.save()

    def save(self):
        """Write the counters to the state file; a failure is logged, the counting goes on."""
        if self.path is None or not self._dirty:
            return
        with self._lock:  # a copy of the counters (a few hundred µs); the writing is done without the lock
            states = {name: c.to_state() for name, c in self.counters.items()}
            self._dirty = False
            self._last_save = time.monotonic()
        try:
            save_state(self.path, states)
        except OSError as exc:
            log.warning("cannot save the SLO state %s: %s", self.path, exc.strerror or exc)

    def stop(self):
        self.runner.stop()
        self.save()

    def sections(self, wall_ns):
        """``(probes, slo)`` for a sample taken at ``wall_ns``: the latest
        result of each probe, and the SLO summary of each probe with its
        windows ending at that minute. Both None without probes."""
        if not self.probes:
            return None, None
        latest = self.runner.latest()
        minute = minute_of(wall_ns)
        summaries = []
        with self._lock:
            for probe in self.probes:
                counters = self.counters[probe.name]
                counters.advance(minute)
                made = self._summaries.get(probe.name)
                if made is None or made[0] != (id(counters), counters.changes):
                    made = self._summaries[probe.name] = ((id(counters), counters.changes), summarize(
                        probe.name, counters, probe.slo, None if probe.latency is None else probe.latency * 1000.0))
                summaries.append(made[1])
        return latest, summaries

    def stats(self):
        return self.runner.stats()
