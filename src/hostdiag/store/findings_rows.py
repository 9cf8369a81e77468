"""What the collector's stores keep of a record beside its raw bytes: its
findings as rows, and the rates of its processes and connections.

Both stores (SQLite and ClickHouse) take each record's findings as they
store it (:class:`~hostdiag.findings.stream.FindingsStream`: those the record
carries, else evaluated) and keep them as
the rows :func:`finding_rows` makes: one per finding, numbered ``n`` in the
order :func:`~hostdiag.findings.evaluate` gives them (crit first), with the
first culprit's process and workload as columns. The ClickHouse store also
keeps per-process and per-connection rates as columns of its ``processes``
and ``sockets`` rows (:func:`process_rates_of`, :func:`connection_rates_of`).

Units: percent of one CPU (cpu_pct), bytes per second, segments per second.
"""

from hostdiag.derive.process_rates import process_key
from hostdiag.derive.socket_rates import connection_key
from hostdiag.findings.workloads import label_of

SEVERITIES = ("crit", "warn")


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _process_cgroup(snapshot, pid):
    section = snapshot.processes if isinstance(snapshot.processes, dict) else {}
    for record in section.get("processes") or ():
        if isinstance(record, dict) and record.get("pid") == pid:
            cgroup = record.get("cgroup")
            return cgroup if isinstance(cgroup, str) else None
    return None


def culprit_columns(finding, snapshot):
    """(kind, pid, comm, workload) of a finding's first culprit: a process's
    own, a connection's or listener's first holder, and the workload (unit,
    container, pod) of that process's cgroup, or of the cgroup a cgroup
    finding is about; None where unknown."""
    culprits = finding.get("culprits") or ()
    culprit = culprits[0] if culprits and isinstance(culprits[0], dict) else {}
    kind = culprit.get("kind")
    holder = culprit
    if kind in ("connection", "listener"):
        holders = culprit.get("processes") or ()
        holder = holders[0] if holders and isinstance(holders[0], dict) else {}
    pid = holder.get("pid") if isinstance(holder.get("pid"), int) else None
    comm = holder.get("comm") if isinstance(holder.get("comm"), str) else None
    cgroup = _process_cgroup(snapshot, pid) if pid is not None else None
    if cgroup is None and str(finding.get("id", "")).startswith("cgroup_") and isinstance(finding.get("subject"), str):
        cgroup = finding["subject"]
    workload = label_of(snapshot, cgroup) if cgroup is not None else None
    return kind, pid, comm, workload


def _row(finding, cause, culprit):
    evidence = {str(k): v for k, v in (finding.get("evidence") or {}).items() if _number(v)}
    subject = finding.get("subject")
    kind, pid, comm, workload = culprit
    return {"rule": str(finding["id"]), "severity": str(finding["severity"]), "cause": cause,
            "subject": None if subject is None else str(subject), "title": str(finding["title"]),
            "threshold": str(finding.get("threshold") or ""), "evidence": evidence,
            "culprit_kind": kind, "culprit_pid": pid, "culprit_comm": comm, "culprit_workload": workload}


def finding_rows(findings, snapshot):
    """One dict per finding: ``n``, ``rule``, ``severity``, ``cause``,
    ``subject``, ``title``, ``threshold``, ``evidence`` ({name: number}),
    ``culprit_kind``, ``culprit_pid``, ``culprit_comm``, ``culprit_workload``.

    A finding that carries ``symptoms`` (the findings it explains, folded
    under it when findings are ranked by cause) is followed by a row for
    each, whose ``cause`` is the finding's rule and whose culprit is the
    finding's: "which host had what" still finds the symptom. ``cause`` is
    None for a finding of its own."""
    rows = []
    for finding in findings:
        culprit = culprit_columns(finding, snapshot)
        rows.append(_row(finding, None, culprit))
        for symptom in finding.get("symptoms") or ():
            if isinstance(symptom, dict) and "id" in symptom and "severity" in symptom:
                rows.append(_row(dict(symptom, title=symptom.get("title") or ""), str(finding["id"]), culprit))
    for n, row in enumerate(rows):
        row["n"] = n
    return rows


def process_rates_of(rates):
    """``lookup(record)`` -> (cpu_pct, io_bytes_per_s) of a process record
    under ``rates`` (None, None without them)."""
    per = rates.get("processes") if isinstance(rates, dict) else None
    per = per if isinstance(per, dict) else {}

    def lookup(record):
        if not isinstance(record.get("start_time"), int):
            return None, None
        found = per.get(process_key(record)) or {}
        read, write = found.get("read_bytes_per_s"), found.get("write_bytes_per_s")
        io = None if read is None and write is None else (read or 0) + (write or 0)
        return found.get("cpu_pct"), io
    return lookup


def connection_rates_of(rates):
    """``lookup(row)`` -> retransmits per second of a socket row ({field: value}) under ``rates``."""
    per = rates.get("sockets") if isinstance(rates, dict) else None
    per = per if isinstance(per, dict) else {}

    def lookup(row):
        try:
            key = connection_key(row)
        except KeyError:
            return None
        return (per.get(key) or {}).get("retrans_per_s")
    return lookup
