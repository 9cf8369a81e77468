"""What a finding is: its severities and :func:`finding`, which every rule module builds with."""

from hostdiag.findings.culprits import culprit_text
from hostdiag.findings.values import num

CRIT = "crit"
WARN = "warn"


def finding(rule_id, severity, title, evidence, threshold, subject=None, culprits=()):
    """One finding; evidence keeps only numbers (floats to two decimals) and
    the title gains the first culprit."""
    clean = {}
    for key, value in evidence.items():
        value = num(value)
        if value is not None:
            clean[key] = round(value, 2) if isinstance(value, float) else value
    culprits = list(culprits)
    if culprits:
        title = "%s; %s" % (title, culprit_text(culprits[0]))
    return {"id": rule_id, "severity": severity, "title": title, "evidence": clean,
            "threshold": threshold, "subject": subject, "culprits": culprits}
