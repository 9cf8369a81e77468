"""The agent's incident recorder: the tracker of findings/incidents.py fed
with every sample, and the bundles of store/incidents.py written from it.

Per sample (:meth:`IncidentRecorder.observe`) it keeps the sample's findings
in a timeline and gives the tracker the sample's signals. While no incident
is open, the timeline of the last ``incidents.before`` seconds is kept in
memory (at most :data:`MAX_RECENT` entries). When one opens, the records
from ``before`` seconds ahead of its start are read back from the history
once, compressed, and the bundle is written; each later sample adds its
record and timeline entry, the bundle is written again every
``incidents.write_every`` seconds and when the incident closes. A bundle
stops growing at its byte bound (``truncated`` in its summary).

An incident still open when the agent stops, or dies, is closed when the
agent next starts, with ``end_reason`` "agent restarted" and its end at the
newest record its bundle holds: the agent cannot know whether the trouble
went on while it was not sampling, and a new incident opens if it did.
"""

import collections
import logging
import os
import secrets
import time

from hostdiag.encode.wire import encode_msgpack
from hostdiag.findings.incidents import IncidentTracker, incident_signals, timeline_finding
from hostdiag.store.incidents import IncidentStore, compress_record

log = logging.getLogger("hostdiag.apps.agent.incidents")

NS = 1_000_000_000
# Timeline entries kept while no incident is open, at most (the time bound is incidents.before).
MAX_RECENT = 3600
# Bytes kept free in a frame around a bundle (the reply's other members).
FRAME_MARGIN = 4 * 1024
# Bytes of a bundle kept for what is not records, timeline or probe results:
# the summary (at most MAX_SIGNALS signals), the newest SLO section, the framing.
ENVELOPE_RESERVE = 8 * 1024
# Signals named in a summary, at most (the first ones seen).
MAX_SIGNALS = 16
# Characters of a signal's title in a summary, at most.
MAX_TITLE_CHARS = 200
# Bytes a record entry costs in a bundle beyond its compressed payload (boot id, seq, time).
RECORD_OVERHEAD = 64
END_CLEARED = "cleared"
END_RESTARTED = "agent restarted"


def incidents_directory(config):
    """Where the agent keeps its bundles: beside the spool's segments, or None (memory) without a spool."""
    return os.path.join(config.spool.dir, "incidents") if config.spool.enabled else None


def new_incident_id(start_ns):
    """``YYYYMMDD-HHMMSS-xxxx``: the start in UTC and 16 random bits, so that
    two incidents of one second on one host differ."""
    return "%s-%s" % (time.strftime("%Y%m%d-%H%M%S", time.gmtime(start_ns / NS)), secrets.token_hex(2))


def _probe_results(snapshot):
    probes = snapshot.get("probes")
    return [p for p in probes if isinstance(p, dict)] if isinstance(probes, list) else []


def _named_signals(signals):
    """The signals a summary names: the first :data:`MAX_SIGNALS`, titles cut."""
    return [{"key": str(s["key"])[:MAX_TITLE_CHARS], "title": str(s["title"])[:MAX_TITLE_CHARS]}
            for s in signals[:MAX_SIGNALS]]


class IncidentRecorder:
    """Tracks incidents over the agent's samples and keeps their bundles."""

    def __init__(self, config, history, host):
        incidents = config.incidents
        directory = incidents_directory(config)
        try:
            self.store = IncidentStore(directory, incidents.max_count, incidents.max_bytes)
        except OSError as exc:
            log.warning("incidents: cannot use %s (%s): bundles are kept in memory only until a restart",
                        directory, exc.strerror or exc)
            self.store = IncidentStore(None, incidents.max_count, incidents.max_bytes)
        self.history = history
        self.host = host  # () -> {"hostname", ...}: the agent's host, as its last sample said
        self.tracker = IncidentTracker(incidents.open_after, incidents.close_after)
        self.before_ns = int(incidents.before * NS)
        self.write_every_ns = int(incidents.write_every * NS)
        self.bundle_limit = (min(incidents.bundle_max_bytes, config.server.max_frame_bytes - FRAME_MARGIN)
                             - ENVELOPE_RESERVE)
        self.interval_s = config.agent.interval
        self.recent = collections.deque(maxlen=MAX_RECENT)
        self.current = None  # the open incident: summary, records, timeline, probes, bytes, written_ns
        self.changes = 0     # bumped at every bundle write: a collector fetches again when it moves
        self.failures = 0
        self.write_error = None  # why the last bundle write failed, until one succeeds
        self._log_problems()
        self._close_interrupted()

    def _log_problems(self):
        for problem in self.store.problems:
            log.warning("%s", problem)
        self.store.problems.clear()

    def _close_interrupted(self):
        for summary in self.store.list():
            if summary.get("state") != "open":
                continue
            loaded = self.store.load(summary["id"])
            if loaded is None:
                continue
            summary, body = loaded
            records = body.get("records") or []
            end_ns = records[-1][2] if records else summary.get("detected_ns")
            summary.update(state="closed", end_ns=end_ns, end_seq=records[-1][1] if records else None,
                           resolved_ns=time.time_ns(), end_reason=END_RESTARTED)
            if not self._save(summary, body):
                continue
            self.changes += 1
            log.warning("incident %s (%s) was open when the agent stopped: closed as %r",
                        summary["id"], summary.get("title"), END_RESTARTED)
        self._log_problems()

    def marker(self):
        """What the agent section of a snapshot says of incidents: a collector
        fetches bundles when ``changes`` moves."""
        stats = self.store.stats()
        return {"open": None if self.current is None else self.current["summary"]["id"],
                "count": stats["count"], "bytes": stats["bytes"], "changes": self.changes,
                "failures": self.failures, "write_error": self.write_error}

    def observe(self, record, snapshot, findings):
        """One sample: ``record`` (the history's Record of it, already
        appended), its snapshot as plain data and its findings. Never raises:
        a failure is logged and counted, and sampling goes on."""
        try:
            self._observe(record, snapshot, findings)
        except Exception:  # noqa: BLE001 - the agent samples on whatever the recorder does
            self.failures += 1
            log.exception("incident recorder failed on sample %s", record.seq)

    def _observe(self, record, snapshot, findings):
        slo = snapshot.get("slo") if isinstance(snapshot.get("slo"), (dict, list)) else None
        signals = incident_signals(findings, slo)
        entry = {"seq": record.seq, "wall_ns": record.wall_ns,
                 "findings": [timeline_finding(f) for f in findings],
                 "signals": [s["key"] for s in signals]}
        if slo is not None:
            entry["slo"] = slo
        event = self.tracker.observe(record.seq, record.wall_ns, signals)
        if self.current is not None:
            self._add(record, entry, snapshot)
        else:
            self.recent.append(entry)
            pending = self.tracker.pending_start_ns
            horizon = (record.wall_ns if pending is None else pending) - self.before_ns
            while self.recent and self.recent[0]["wall_ns"] < horizon:
                self.recent.popleft()
        if event is not None and event["event"] == "open":
            self._open(event, record, slo)
        elif event is not None and event["event"] == "close":
            self._close(event)
        elif self.current is not None and record.wall_ns - self.current["written_ns"] >= self.write_every_ns:
            self._write(record.wall_ns)

    def _open(self, event, record, slo):
        started = time.monotonic()
        first_ns = event["start_ns"] - self.before_ns
        host = self.host() or {}
        summary = {
            "id": new_incident_id(event["start_ns"]), "state": "open",
            "title": str(event["title"])[:MAX_TITLE_CHARS], "severity": event["severity"],
            "hostname": host.get("hostname"), "agent_id": self.history.agent_id,
            "boot_id": record.boot_id, "start_ns": event["start_ns"], "start_seq": event["start_seq"],
            "detected_ns": event["detected_ns"], "detected_seq": event["detected_seq"],
            "end_ns": None, "end_seq": None, "resolved_ns": None, "end_reason": None,
            "signals": _named_signals(event["signals"]),
            "before_s": self.before_ns / NS, "interval_s": self.interval_s,
            "open_after": self.tracker.open_after, "close_after": self.tracker.close_after,
            "truncated": False, "records": 0,
        }
        self.current = {"summary": summary, "records": [], "timeline": [], "probes": [], "slo": slo,
                        "bytes": 0, "written_ns": 0}
        for entry in self.recent:
            if entry["wall_ns"] >= first_ns:
                self._keep_entry(entry)
        self.recent.clear()
        for stored in self.history.range(start_ns=first_ns, end_ns=record.wall_ns, limit=None):
            self._keep_record(stored, None)
        self._write(record.wall_ns)
        log.warning("incident %s opened: %s (since %d samples; %d records frozen in %.3f s)",
                    summary["id"], summary["title"], self.tracker.open_after, summary["records"],
                    time.monotonic() - started)

    def _add(self, record, entry, snapshot):
        self._keep_entry(entry)
        self._keep_record(record, snapshot)
        slo = entry.get("slo")
        if slo is not None:
            self.current["slo"] = slo

    def _keep_entry(self, entry):
        size = len(encode_msgpack(entry))
        if not self._room(size):
            return
        self.current["timeline"].append(entry)
        self.current["bytes"] += size

    def _keep_record(self, record, snapshot):
        """Add a record (its probe results too); ``snapshot``: its plain data
        when the caller has it, else decoded here for the probes."""
        current = self.current
        if snapshot is None:
            from hostdiag.encode.wire import decode_msgpack

            try:
                snapshot = decode_msgpack(record.payload)
            except ValueError:
                snapshot = {}
        results = _probe_results(snapshot if isinstance(snapshot, dict) else {})
        kept = compress_record(record.boot_id, record.seq, record.wall_ns, record.payload)
        size = len(kept[3]) + RECORD_OVERHEAD + (len(encode_msgpack(results)) if results else 0)
        if not self._room(size):
            return
        current["records"].append(kept)
        current["probes"].extend(results)
        current["bytes"] += size
        current["summary"]["records"] += 1

    def _room(self, size):
        if self.current["bytes"] + size <= self.bundle_limit:
            return True
        self.current["summary"]["truncated"] = True
        return False

    def _write(self, now_ns):
        current = self.current
        body = {"records": current["records"], "findings": current["timeline"], "probes": current["probes"],
                "slo": current["slo"]}
        current["written_ns"] = now_ns  # a failed write is tried again write_every later, not every sample
        self._save(dict(current["summary"]), body)

    def _save(self, summary, body):
        """Save a bundle; False when it could not be written (a full disk):
        one warning when writes start failing, one when they work again."""
        try:
            self.store.save(summary, body)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if self.write_error is None:
                log.warning("incident %s: bundle not written (%s); kept in memory, tried again every %g s",
                            summary["id"], reason, self.write_every_ns / NS)
            self.write_error = reason
            return False
        if self.write_error is not None:
            log.info("incident bundles written again")
            self.write_error = None
        self.changes += 1
        return True

    def _close(self, event):
        summary = self.current["summary"]
        summary.update(state="closed", end_ns=event["end_ns"], end_seq=event["end_seq"],
                       resolved_ns=event["resolved_ns"], end_reason=END_CLEARED,
                       signals=_named_signals(event["signals"]))
        self._write(event["resolved_ns"])
        log.warning("incident %s closed: %s, %.1f s from start to end", summary["id"], summary["title"],
                    (event["end_ns"] - summary["start_ns"]) / NS)
        self.current = None

    def close(self):
        """The agent stops: write the open incident's bundle as it stands (the
        next start closes it as "agent restarted")."""
        if self.current is not None:
            self._write(time.time_ns())
