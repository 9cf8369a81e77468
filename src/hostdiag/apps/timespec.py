"""Reading the times and durations people type: ``--at -10m``, ``diag diff
08:00 09:00``, ``--window 5m``.

A TIME is ISO-8601 (``2026-11-26T08:00:00Z``, ``2026-11-26 09:00``, ``08:00``
for today, local time without a zone), epoch seconds (``1795680000``, or
nanoseconds when it has 17 digits or more), relative (``-10m``, ``10 minutes
ago``, ``-1h30m``) or ``now``. Results are nanoseconds since the epoch.
"""

import datetime
import re

NS = 1_000_000_000

_UNIT_SECONDS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}
_SPAN_PART = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]+)")
_EPOCH = re.compile(r"^@?([0-9]+(?:\.[0-9]+)?)$")
_TIME_HELP = ("give ISO-8601 (2026-11-26T08:00:00Z, 08:00), epoch seconds (1795680000) "
              "or relative (-10m, \"10 minutes ago\", now)")


def parse_span(text):
    """Seconds in "90", "10m", "1h30m", "2 hours", "1.5d"; ValueError otherwise."""
    text = text.strip().lower()
    if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", text):
        return float(text)
    total, pos = 0.0, 0
    for match in _SPAN_PART.finditer(text):
        if match.start() != pos or match.group(2) not in _UNIT_SECONDS:
            raise ValueError(text)
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos == 0 or text[pos:].strip():
        raise ValueError(text)
    return total


def parse_time(text, now_ns):
    """Nanoseconds since the epoch for a TIME argument (see the module doc);
    ValueError with the reason."""
    raw = text
    text = text.strip()
    lowered = text.lower()
    if lowered == "now":
        return now_ns
    relative = None
    if lowered.startswith("-"):
        relative = lowered[1:]
    elif lowered.endswith(" ago") or lowered.endswith("ago"):
        relative = lowered[:-3].strip()
    if relative is not None:
        try:
            return now_ns - int(parse_span(relative) * NS)
        except ValueError:
            raise ValueError("cannot read the relative time %r: %s" % (raw, _TIME_HELP)) from None
    match = _EPOCH.match(text)
    if match:
        value = float(match.group(1))
        digits = len(match.group(1).split(".")[0])
        return int(match.group(1)) if digits >= 17 and "." not in match.group(1) else int(value * NS)
    if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?\s*[a-z][a-z ]*", lowered):
        try:  # "10m", "10 minutes": before now, like "10m ago"
            return now_ns - int(parse_span(lowered) * NS)
        except ValueError:
            pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        try:
            clock = datetime.time.fromisoformat(text)
        except ValueError:
            raise ValueError("cannot read the time %r: %s" % (raw, _TIME_HELP)) from None
        today = datetime.datetime.fromtimestamp(now_ns / NS).date()
        moment = datetime.datetime.combine(today, clock)
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time
    return int(moment.timestamp()) * NS + moment.microsecond * 1000

