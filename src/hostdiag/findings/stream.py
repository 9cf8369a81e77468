"""Findings over a host's records as a store receives them, one at a time.

A record's rates come from two bases, as the agent's own (``/metrics``) and
``diag show`` take them: the system's from the record just before it (seq -
1 of the same boot), the process, socket and cgroup tables' from the newest
earlier record that carried them (an agent takes the tables every
``agent.table_every`` samples). :func:`rates_at` combines the two;
:class:`FindingsStream` keeps both bases per host, so that a writer
evaluates each record once, in the order it stores them.

A base the stream does not hold (the first record after a writer starts, or
after a gap) is asked of the store through a ``lookup(boot_id, seq)`` that
returns the documents of seq - 1 and of the newest record with tables
within :data:`TABLES_LOOKBACK` seqs before ``seq`` (either None).

A record an agent judged itself carries its findings (its ``findings``
section, :func:`findings_section`): the stream takes them as they are and
runs no rule for it, and derives its rates only when the writer asks for
them (``want_rates``: the ClickHouse store's per-process and per-connection
columns). Only a record without the section (an older agent's, a document
``diag`` made) is evaluated here.

Memory: two snapshots per host at the most (the previous record and the
previous one with tables), replaced as newer records arrive.
"""

from collections import namedtuple

from hostdiag.derive.rates import derive_rates
from hostdiag.findings.rules import evaluate
from hostdiag.model.snapshot import Snapshot

# How far back (in seqs) the base of a record's table rates is looked for.
TABLES_LOOKBACK = 60
_TABLE_SECTIONS = ("processes", "sockets", "cgroups")

# The culprits a finding keeps in a record's ``findings`` section. The
# findings tables keep the first one's columns (store/findings_rows.py); the
# next two are for a reader of the record, at a few hundred bytes a finding.
RECORD_CULPRITS = 3

Evaluated = namedtuple("Evaluated", "snapshot rates findings")
Evaluated.__doc__ = """A record's typed snapshot, its rates (None without a base) and its findings."""

_Base = namedtuple("_Base", "agent_id boot_id seq snapshot tables_seq tables")


def has_tables(snapshot):
    """True when the snapshot carries the process or the socket table."""
    return snapshot.processes is not None or snapshot.sockets is not None


def findings_section(found):
    """A record's ``findings`` section: ``found`` (the list
    :func:`hostdiag.findings.evaluate` returns, ranked) with each finding's
    ``culprits`` cut to the first :data:`RECORD_CULPRITS`."""
    return [dict(finding, culprits=finding["culprits"][:RECORD_CULPRITS])
            if len(finding.get("culprits") or ()) > RECORD_CULPRITS else finding for finding in found]


def carried_findings(doc):
    """The findings a record carries (its ``findings`` section), or None
    when it carries none to trust (absent, null, or not a list of findings
    shaped as :func:`hostdiag.findings.evaluate` gives them)."""
    found = doc.get("findings")
    if type(found) is not list or not all(type(finding) is dict and _shaped(finding) for finding in found):
        return None
    return found


def _shaped(finding):
    return (all(isinstance(finding.get(name), str) for name in ("id", "severity", "title"))
            and isinstance(finding.get("evidence"), (dict, type(None)))
            and all(isinstance(finding.get(name), (list, type(None))) for name in ("culprits", "symptoms")))


def typed(doc):
    """The Snapshot of a stored document, or None when it is not one."""
    if doc is None:
        return None
    try:
        return Snapshot.from_dict(doc)
    except ValueError:
        return None


def rates_at(current, previous, tables_previous):
    """The rates at ``current``: the system's against ``previous`` (None: no
    rates at all), the tables' against ``tables_previous`` when ``current``
    has tables (else as ``previous`` gives them)."""
    if previous is None:
        return None
    rates = derive_rates(previous, current)
    if tables_previous is not None and tables_previous is not previous and has_tables(current):
        table_rates = derive_rates(tables_previous, current)
        rates.update((name, table_rates[name]) for name in _TABLE_SECTIONS)
    return rates


class FindingsStream:
    """The findings of each record a writer stores, with the bases of its rates kept per host."""

    def __init__(self):
        self._bases = {}  # host -> _Base of the newest record evaluated

    def clear(self):
        """Forget the bases (after a rollback: they may name records that were not stored)."""
        self._bases.clear()

    def evaluate(self, host, agent_id, boot_id, seq, doc, lookup=None, want_rates=False):
        """The :data:`Evaluated` record ``seq`` of ``host``; None when ``doc``
        is not a snapshot. Its findings are the record's own when it carries
        them (:func:`carried_findings`), and then its rates are derived only
        when ``want_rates`` is true (else None)."""
        snapshot = typed(doc)
        if snapshot is None:
            return None
        carried = carried_findings(doc)
        base = self._bases.get(host)
        if base is not None and (base.agent_id, base.boot_id) != (agent_id, boot_id):
            base = None
        previous = base.snapshot if base is not None and base.seq == seq - 1 else None
        tables_previous = None
        if base is not None and base.tables is not None and seq - TABLES_LOOKBACK <= base.tables_seq < seq:
            tables_previous = base.tables
        tables_seq = base.tables_seq if tables_previous is not None else None
        needed = carried is None or want_rates
        if needed and lookup is not None and seq > 1 and (
                previous is None or (has_tables(snapshot) and tables_previous is None)):
            previous_doc, tables_found = lookup(boot_id, seq)
            if previous is None:
                previous = typed(previous_doc)
            if tables_previous is None and tables_found is not None:
                tables_seq, tables_previous = tables_found[0], typed(tables_found[1])
        rates = rates_at(snapshot, previous, tables_previous) if needed else None
        found = evaluate(snapshot, rates, previous) if carried is None else carried
        if base is None or seq > base.seq:  # a late record does not move the bases back
            if has_tables(snapshot):
                tables_seq, tables_previous = seq, snapshot
            self._bases[host] = _Base(agent_id, boot_id, seq, snapshot, tables_seq, tables_previous)
        return Evaluated(snapshot, rates, found)
