"""Service level objectives over probe results: availability, error budget and
burn rates, with the multi-window alert rule of the SRE workbook
(docs/availability.md has the same definitions with examples).

Counting. Each probe result is one event: **good** when the probe succeeded
and, with a latency threshold, answered within it; otherwise bad.
:class:`SloCounters` keeps good and total per wall-clock minute in a ring of
:data:`RING_MINUTES` (30 days) minutes, two 16-bit arrays per probe
(43,200 x 2 x 2 bytes = 169 KiB per probe), with a running sum per window so
that a summary costs a few additions however long the window.

Windows. A window of W minutes holds the W newest minutes, the current
(unfinished) one included: minutes ``newest - W + 1 .. newest``. Minutes
without results (the agent was down, the probe had not run) count neither way.

Figures, for a window with ``good`` of ``total`` results and a target of
``T`` percent (the allowed bad fraction, the budget, is ``1 - T/100``):

- availability = good / total
- burn rate = (bad / total) / (1 - T/100): 1 spends the budget exactly over
  the SLO period (30 days); 14.4 spends 2 % of it in an hour
- budget left = 1 - burn rate over 30 days: the fraction of the 30-day
  budget not spent (below 0 when overspent)

Each is None when the window has no results.

Alerts (:data:`ALERT_RULES`, the workbook's "multiwindow, multi-burn-rate
alerts"): a rule fires when the burn rate over **both** its long and its short
window is **above** its factor: page at 14.4 over 1 h and 5 m, page at 6 over
6 h and 30 m, ticket at 1 over 3 days and 6 h.
"""

import functools
from array import array
from fractions import Fraction

BUCKET_S = 60
RING_MINUTES = 30 * 24 * 60
# A minute's count saturates here (16 bits); a probe runs at most 600 times a
# minute (interval >= 0.1 s).
MAX_PER_MINUTE = 65535
# Window name -> minutes. The summary's windows and the alert rules' ones.
WINDOWS = {"5m": 5, "30m": 30, "1h": 60, "6h": 360, "1d": 1440, "3d": 4320, "30d": RING_MINUTES}
# (severity, long window, short window, burn-rate factor)
ALERT_RULES = (
    ("page", "1h", "5m", 14.4),
    ("page", "6h", "30m", 6.0),
    ("ticket", "3d", "6h", 1.0),
)


def minute_of(wall_ns):
    """The minute number (since the epoch) of a wall-clock time in ns."""
    return wall_ns // (BUCKET_S * 1_000_000_000)


class SloCounters:
    """Good and total results per minute over the last RING_MINUTES minutes
    of one probe, with running sums per window of :data:`WINDOWS`."""

    def __init__(self):
        self.good = array("H", bytes(2 * RING_MINUTES))
        self.total = array("H", bytes(2 * RING_MINUTES))
        self.newest = None   # the newest minute held, None before the first
        self.sums = {name: [0, 0] for name in WINDOWS}
        self.changes = 0     # grows at each change: a summary made at the same count is still true

    def advance(self, minute):
        """Make ``minute`` the newest: the minutes between start empty, those
        older than 30 days are dropped. A minute older than the newest (the
        wall clock stepped back) changes nothing."""
        if self.newest is not None and minute <= self.newest:
            return
        self.changes += 1
        if self.newest is None:
            self.newest = minute
            return
        if minute - self.newest >= RING_MINUTES:
            self.good = array("H", bytes(2 * RING_MINUTES))
            self.total = array("H", bytes(2 * RING_MINUTES))
            self.sums = {name: [0, 0] for name in WINDOWS}
            self.newest = minute
            return
        good, total, sums = self.good, self.total, self.sums
        for m in range(self.newest + 1, minute + 1):
            for name, width in WINDOWS.items():
                leaving = (m - width) % RING_MINUTES   # the minute m - width leaves the window
                pair = sums[name]
                pair[0] -= good[leaving]
                pair[1] -= total[leaving]
            slot = m % RING_MINUTES
            good[slot] = 0
            total[slot] = 0
        self.newest = minute

    def record(self, minute, good):
        """Count one result in ``minute`` (the newest minute when it is older)."""
        self.advance(minute)
        slot = self.newest % RING_MINUTES
        if self.total[slot] >= MAX_PER_MINUTE:
            return
        self.changes += 1
        self.total[slot] += 1
        self.good[slot] += 1 if good else 0
        for pair in self.sums.values():
            pair[0] += 1 if good else 0
            pair[1] += 1

    def window(self, name):
        """``(good, total)`` over the window ``name`` of :data:`WINDOWS`."""
        return tuple(self.sums[name])

    def to_state(self):
        """Plain data for the state file: ``{"newest", "good", "total"}`` (bytes, little-endian)."""
        good, total = array("H", self.good), array("H", self.total)
        if array("H", [1]).tobytes() != b"\x01\x00":
            good.byteswap()
            total.byteswap()
        return {"newest": self.newest, "good": good.tobytes(), "total": total.tobytes()}

    @classmethod
    def from_state(cls, state):
        """The inverse of :meth:`to_state`; ValueError on a wrong shape."""
        if not isinstance(state, dict):
            raise ValueError("a probe's counters are not a map")
        newest, good_bytes, total_bytes = state.get("newest"), state.get("good"), state.get("total")
        if newest is not None and (not isinstance(newest, int) or isinstance(newest, bool) or newest < 0):
            raise ValueError("bad newest minute %r" % (newest,))
        for raw in (good_bytes, total_bytes):
            if not isinstance(raw, bytes) or len(raw) != 2 * RING_MINUTES:
                raise ValueError("counters of the wrong size")
        counters = cls()
        counters.good = array("H", good_bytes)
        counters.total = array("H", total_bytes)
        if array("H", [1]).tobytes() != b"\x01\x00":
            counters.good.byteswap()
            counters.total.byteswap()
        if any(g > t for g, t in zip(counters.good, counters.total)):
            raise ValueError("more good results than results in a minute")
        counters.newest = newest
        if newest is not None:
            for name, width in WINDOWS.items():
                counters.sums[name] = [_window_sum(counters.good, newest, width),
                                       _window_sum(counters.total, newest, width)]
        return counters


def _window_sum(counts, newest, width):
    """The sum of ``counts`` over the ``width`` minutes ending at ``newest``
    (one or two slices of the ring)."""
    end = newest % RING_MINUTES + 1
    start = end - width
    if start >= 0:
        return sum(counts[start:end])
    return sum(counts[:end]) + sum(counts[start:])


def is_good(ok, latency_ms, threshold_ms):
    """A result counts as good: it succeeded, within the latency threshold when there is one."""
    if not ok:
        return False
    return threshold_ms is None or (latency_ms is not None and latency_ms <= threshold_ms)


def availability(good, total):
    """good / total, None without results."""
    return None if total == 0 else good / total


@functools.lru_cache(maxsize=256)
def _budget_ratio(target_percent):
    """(p, q): the budget 100 - target, in percent, as the exact fraction p/q
    of the target as written (99.9 gives 1/10, not the float's binary value)."""
    budget = 100 - Fraction(repr(float(target_percent)))
    return budget.numerator, budget.denominator


def burn_rate(good, total, target_percent):
    """How fast the window spends the error budget: (bad / total) / (1 - target/100);
    None without results. One division of two integers: exact, rounded once
    (3 bad of 1000 at 99.9 % is 3.0)."""
    if total == 0:
        return None
    p, q = _budget_ratio(target_percent)
    return ((total - good) * 100 * q) / (total * p)


def budget_left(good, total, target_percent):
    """The fraction of the error budget not spent: 1 - the burn rate; None without results."""
    if total == 0:
        return None
    p, q = _budget_ratio(target_percent)
    return (total * p - (total - good) * 100 * q) / (total * p)


def alerts(burns):
    """The rules of :data:`ALERT_RULES` that fire for ``burns`` ({window: burn rate or None}),
    as ``"SEVERITY:LONG/SHORT"`` strings, in the rules' order."""
    fired = []
    for severity, long_window, short_window, factor in ALERT_RULES:
        long_burn, short_burn = burns.get(long_window), burns.get(short_window)
        if long_burn is not None and short_burn is not None and long_burn > factor and short_burn > factor:
            fired.append("%s:%s/%s" % (severity, long_window, short_window))
    return fired


def summarize(name, counters, target_percent, threshold_ms):
    """The SLO_SUMMARY record (src/hostdiag/model/records.py) of one probe's counters."""
    windows = {w: counters.window(w) for w in WINDOWS}
    burns = {w: burn_rate(g, t, target_percent) for w, (g, t) in windows.items()}
    fired = alerts(burns)
    severity = None
    if fired:
        severity = "page" if any(rule.startswith("page:") for rule in fired) else "ticket"
    summary = {"name": name, "target_percent": target_percent, "latency_threshold_ms": threshold_ms}
    for w in ("1h", "1d", "30d"):
        good, total = windows[w]
        summary["availability_%s" % w] = availability(good, total)
        summary["good_%s" % w] = good
        summary["total_%s" % w] = total
    summary["budget_left"] = budget_left(*windows["30d"], target_percent)
    for w in ("5m", "30m", "1h", "6h", "3d"):
        summary["burn_%s" % w] = burns[w]
    summary["alerts"] = fired
    summary["alert"] = severity
    summary["alerting"] = bool(fired)
    return summary
