"""What a finding is: its severities, when it happened, and :func:`finding`,
which every rule module builds with."""

from hostdiag.findings.culprits import culprit_text
from hostdiag.findings.guide import LOOK_NEXT
from hostdiag.findings.values import num

CRIT = "crit"
WARN = "warn"
# When: a fault going on now (in the interval, or a gauge read now), or one
# that happened before (an OOM kill since boot, a kernel log line older than
# the interval), which never ranks above a fault going on now.
NOW = "now"
PAST = "past"


def finding(rule_id, severity, title, evidence, threshold, subject=None, culprits=(), when=NOW,
            ago_s=None):
    """One finding; evidence keeps only numbers (floats to two decimals) and
    the title gains the first culprit. ``ago_s``: seconds since a past
    event, when known. ``symptoms`` starts empty (see
    :mod:`hostdiag.findings.ranking`)."""
    clean = {}
    for key, value in evidence.items():
        value = num(value)
        if value is not None:
            clean[key] = round(value, 2) if isinstance(value, float) else value
    culprits = list(culprits)
    if culprits:
        title = "%s; %s" % (title, culprit_text(culprits[0]))
    ago_s = num(ago_s)
    return {"id": rule_id, "severity": severity, "title": title, "evidence": clean,
            "threshold": threshold, "subject": subject, "culprits": culprits,
            "when": when, "ago_s": None if ago_s is None else round(ago_s, 1),
            "symptoms": [], "look_next": LOOK_NEXT.get(rule_id)}


def ago_text(seconds):
    """How long ago, in a few words: ``40 s ago``, ``12 min ago``, ``3 h ago``, ``2 d ago``."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return "%d %s ago" % (seconds // size, unit)
    return "%d s ago" % seconds
