"""Incidents: when trouble has lasted long enough to be one, and when it is over.

A pure state machine over the agent's samples (no clock, no I/O): each
sample brings its *signals*, the things that page someone:

* a crit finding (:func:`hostdiag.findings.evaluate`), keyed by (rule id, subject);
* an SLO burn alert that pages: in the sample's SLO summary of a probe,
  ``alert`` is "page" (the fast-burn rules of docs/availability.md); a
  summary without ``alert`` pages when ``alerting`` is true. A ticket alert
  (a slow burn over days) opens no incident.

:class:`IncidentTracker` opens an incident when some signal is present in
``open_after`` samples in a row, and closes it when ``close_after`` samples in
a row have none. The incident *starts* at the first of those signalled
samples, is *detected* at the last of them, *ends* at the first of the clear
ones and is *resolved* (closed) at the last of them. Times are the samples'
wall clocks (nanoseconds since the epoch); seqs are the history's.
"""

from hostdiag.findings.finding import CRIT

SIGNAL_FINDING = "finding"
SIGNAL_SLO = "slo"
SEVERITY_BURN = "burn"  # an incident opened by SLO burn alerts alone

# Culprits kept per finding in the incident's timeline.
TIMELINE_CULPRITS = 3


def slo_by_probe(slo):
    """{probe name: its SLO summary} of a sample's ``slo`` section: an array of
    summaries each with its ``name`` (what the agent writes), or a map keyed
    by probe name; anything else gives {}."""
    if isinstance(slo, dict):
        return {name: s for name, s in slo.items() if isinstance(name, str) and isinstance(s, dict)}
    if isinstance(slo, list):
        return {s["name"]: s for s in slo if isinstance(s, dict) and isinstance(s.get("name"), str)}
    return {}


def slo_pages(summary):
    """True when a probe's SLO summary says to page (see the module doc)."""
    if "alert" in summary:
        return summary.get("alert") == "page"
    return summary.get("alerting") is True


def incident_signals(findings, slo):
    """The signals of one sample, crit findings first (in the order the
    findings come, most important first), then paging SLOs by probe name:
    [{"kind", "key", "title", "severity"}]. ``slo``: the sample's ``slo``
    section (see :func:`slo_by_probe`), or None."""
    out = []
    for found in findings or ():
        if found.get("severity") == CRIT:
            key = "%s:%s" % (found.get("id"), found.get("subject") or "")
            out.append({"kind": SIGNAL_FINDING, "key": key, "title": found.get("title"), "severity": CRIT})
    for name, state in sorted(slo_by_probe(slo).items()):
        if slo_pages(state):
            burn = state.get("burn_1h")
            title = "SLO of probe %s burning its error budget" % name
            if isinstance(burn, (int, float)) and not isinstance(burn, bool):
                title += " (%.1fx over 1 h)" % burn
            out.append({"kind": SIGNAL_SLO, "key": "slo:%s" % name, "title": title, "severity": SEVERITY_BURN})
    return out


def timeline_finding(found):
    """A finding as the incident's timeline keeps it: the first culprits only."""
    kept = dict(found)
    kept["culprits"] = list(found.get("culprits") or ())[:TIMELINE_CULPRITS]
    return kept


class IncidentTracker:
    """Opens and closes incidents from the signals of consecutive samples.

    :meth:`observe` returns None, or an event: ``{"event": "open", ...}`` with
    ``start_seq``, ``start_ns``, ``detected_seq``, ``detected_ns``, ``title``,
    ``severity`` and ``signals`` (those of the detecting sample); or
    ``{"event": "close", ...}`` with ``end_seq``, ``end_ns``,
    ``resolved_seq``, ``resolved_ns`` and ``signals`` (every signal key seen
    while open, in order of first appearance). :attr:`open` is the incident
    in progress (the open event, updated), or None.
    """

    def __init__(self, open_after, close_after):
        if open_after < 1 or close_after < 1:
            raise ValueError("open_after and close_after must be >= 1, got %r and %r" % (open_after, close_after))
        self.open_after = open_after
        self.close_after = close_after
        self.open = None
        self._run_start = None    # (seq, wall_ns) of the first signalled sample of the run
        self._run_length = 0      # signalled samples in a row (while closed)
        self._clear_start = None  # (seq, wall_ns) of the first clear sample of the run (while open)
        self._clear_length = 0
        self._seen = {}           # signal key -> title, while open

    @property
    def pending_start_ns(self):
        """While closed: the wall time of the first sample of the current run
        of signalled samples, or None."""
        return None if self._run_start is None else self._run_start[1]

    def observe(self, seq, wall_ns, signals):
        """One sample: its seq, wall time and :func:`incident_signals`; an event or None."""
        if self.open is None:
            return self._while_closed(seq, wall_ns, signals)
        return self._while_open(seq, wall_ns, signals)

    def _while_closed(self, seq, wall_ns, signals):
        if not signals:
            self._run_start, self._run_length = None, 0
            return None
        if self._run_start is None:
            self._run_start = (seq, wall_ns)
        self._run_length += 1
        if self._run_length < self.open_after:
            return None
        top = signals[0]
        self.open = {"event": "open", "start_seq": self._run_start[0], "start_ns": self._run_start[1],
                     "detected_seq": seq, "detected_ns": wall_ns, "title": top["title"],
                     "severity": top["severity"], "signals": list(signals)}
        self._seen = {s["key"]: s["title"] for s in signals}
        self._run_start, self._run_length = None, 0
        self._clear_start, self._clear_length = None, 0
        return dict(self.open)

    def _while_open(self, seq, wall_ns, signals):
        if signals:
            for signal in signals:
                self._seen.setdefault(signal["key"], signal["title"])
                if signal["severity"] == CRIT and self.open["severity"] != CRIT:
                    # A crit finding outranks a burn alert: it names a cause.
                    self.open.update(severity=CRIT, title=signal["title"])
            self._clear_start, self._clear_length = None, 0
            return None
        if self._clear_start is None:
            self._clear_start = (seq, wall_ns)
        self._clear_length += 1
        if self._clear_length < self.close_after:
            return None
        event = {"event": "close", "end_seq": self._clear_start[0], "end_ns": self._clear_start[1],
                 "resolved_seq": seq, "resolved_ns": wall_ns,
                 "signals": [{"key": k, "title": t} for k, t in self._seen.items()]}
        self.open = None
        self._seen = {}
        self._clear_start, self._clear_length = None, 0
        return event
