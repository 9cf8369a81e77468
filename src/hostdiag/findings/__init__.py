"""Findings: rules that name what is wrong, with the culprit, the evidence and the threshold.

The layer sits left of everything that encodes, stores or shows: it reads a
snapshot and its rates only. :func:`evaluate` is the entry point.

* :mod:`~hostdiag.findings.rules`: the rules, :data:`RULES` and :func:`evaluate`;
* :mod:`~hostdiag.findings.processes`: rules that name one process or user
  (CPU, memory growth and leaks over history, file and process limits);
* :mod:`~hostdiag.findings.events`: findings from the kernel log's events;
* :mod:`~hostdiag.findings.ranking`: symptoms folded under their cause, and the order;
* :mod:`~hostdiag.findings.guide`: where to look next, per rule;
* :mod:`~hostdiag.findings.thresholds`: every limit, declared once with its unit and why;
* :mod:`~hostdiag.findings.culprits`: which processes and connections explain a finding;
* :mod:`~hostdiag.findings.values`: reading numbers out of sections, writing them in titles.
"""

from hostdiag.findings.culprits import (
    connection_rankings,
    culprit_text,
    socket_inodes_named,
    top_culprits,
)
from hostdiag.findings.rules import CRIT, RULES, WARN, evaluate, filesystem_usage
from hostdiag.findings.thresholds import TABLE, THRESHOLDS, Threshold

__all__ = [
    "CRIT", "RULES", "TABLE", "THRESHOLDS", "WARN", "Threshold", "connection_rankings",
    "culprit_text", "evaluate", "filesystem_usage", "socket_inodes_named", "top_culprits",
]
