"""Findings: rules that name what is wrong, with the culprit, the evidence and the threshold.

The layer sits left of everything that encodes, stores or shows: it reads a
snapshot and its rates only. :func:`evaluate` is the entry point.

* :mod:`~hostdiag.findings.rules`: the host's rules and :func:`~hostdiag.findings.rules.evaluate`;
* :mod:`~hostdiag.findings.netns`: the rules over the network namespaces; :data:`RULES`
  here is both, and :func:`evaluate` here runs them all;
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
from hostdiag.findings import rules as host_rules
from hostdiag.findings.netns import NETNS_RULES
from hostdiag.findings.rules import CRIT, WARN, filesystem_usage
from hostdiag.findings.thresholds import TABLE, THRESHOLDS, Threshold

__all__ = [
    "CRIT", "RULES", "TABLE", "THRESHOLDS", "WARN", "Threshold", "connection_rankings",
    "culprit_text", "evaluate", "filesystem_usage", "socket_inodes_named", "top_culprits",
]

RULES = host_rules.RULES + NETNS_RULES


def evaluate(snapshot, rates=None, previous=None, rules=RULES, history=None):
    """Every finding of ``rules`` (all of them by default: the host's and the
    network namespaces') over one snapshot, its rates and the snapshot they
    start at, ranked as :func:`hostdiag.findings.rules.evaluate` ranks them;
    ``history``: older snapshots of the window, for the rules over history."""
    return host_rules.evaluate(snapshot, rates, previous, rules, history=history)
