"""`diag fleet`'s three questions on one collector's SQLite store (store/sqlite.py):
the fallback for the hosts that collector pulls, with the rows that
store/fleet_clickhouse.py gives (its docstring says what each holds).

* :func:`hosts` and :func:`findings` are SQL on the ``findings`` table the
  writer fills (one SELECT each; :func:`findings` groups the rows in Python,
  taking the newest title and the newest culprit named, as ClickHouse's
  ``argMax`` does).
* :func:`top` has no columns to rank: for each host it reads the records of
  the window back from the moment (at most ``TABLES_LOOKBACK`` of them),
  takes the newest with tables whose measure is known, derives its rates
  (findings/stream.py, as the writer does) and ranks what it finds. It reads
  every host's records, so it suits one collector's hosts, not a fleet.

Units: nanoseconds since the epoch, seconds, percent of one CPU, bytes, bytes
per second, segments per second.
"""

import fnmatch
import sqlite3

from hostdiag.derive.socket_rates import connection_key
from hostdiag.encode.delta import document_of
from hostdiag.findings.stream import TABLES_LOOKBACK, has_tables, rates_at, typed
from hostdiag.store.findings_rows import connection_rates_of, process_rates_of
from hostdiag.store.fleet_clickhouse import MEASURES
from hostdiag.store.sqlite import StoreError

NS = 10**9


def _run(store, sql, params):
    try:
        return store.db.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table: findings" in str(exc):
            raise StoreError("the store %s has no findings yet: it was written by an older collector; "
                             "a collector of this version adds them to the records it stores" % store.directory) \
                from None
        raise StoreError("the store %s: %s" % (store.directory, exc)) from None


def _matches(name, pattern):
    return pattern is None or fnmatch.fnmatchcase(name, pattern)


HOSTS_SQL = (
    "SELECT h.name, last.wall_ns, b.boot_id, last.seq, "
    "(SELECT COUNT(*) FROM findings f WHERE f.boot_key = last.boot_key AND f.seq = last.seq AND f.cause IS NULL), "
    "(SELECT COUNT(*) FROM findings f WHERE f.boot_key = last.boot_key AND f.seq = last.seq AND f.cause IS NULL "
    "AND f.severity = 'crit'), "
    "(SELECT group_concat(DISTINCT f.rule) FROM findings f WHERE f.boot_key = last.boot_key AND f.seq = last.seq "
    "AND f.cause IS NULL) "
    "FROM hosts h LEFT JOIN (SELECT host_id, boot_key, seq, MAX(wall_ns) AS wall_ns FROM records "
    "WHERE wall_ns >= ? AND wall_ns <= ? GROUP BY host_id) last ON last.host_id = h.host_id "
    "LEFT JOIN boots b ON b.boot_key = last.boot_key ORDER BY h.name")


def hosts(store, now_ns, within_s):
    """As fleet_clickhouse.hosts."""
    out = []
    for name, last, boot_id, seq, count, crit, rules in _run(store, HOSTS_SQL, (now_ns - int(within_s * NS), now_ns)):
        out.append({"host": name, "last_ns": last, "boot_id": boot_id, "seq": seq,
                    "lag_s": None if last is None else max(0.0, (now_ns - last) / NS),
                    "findings": count or 0, "crit": crit or 0, "rules": sorted(rules.split(",")) if rules else []})
    return out


FINDINGS_SQL = (
    "SELECT h.name, f.rule, f.severity, COALESCE(f.subject, ''), f.wall_ns, f.title, f.culprit_pid, "
    "f.culprit_comm, f.culprit_workload FROM findings f JOIN hosts h ON h.host_id = f.host_id "
    "WHERE f.wall_ns >= ? AND f.wall_ns <= ? ORDER BY f.wall_ns, f.n")


def findings(store, from_ns, to_ns, pattern=None):
    """As fleet_clickhouse.findings."""
    groups = {}
    for name, rule, severity, subject, wall_ns, title, pid, comm, workload in _run(
            store, FINDINGS_SQL, (from_ns, to_ns)):
        if not _matches(name, pattern):
            continue
        group = groups.setdefault((name, rule, severity, subject), {
            "host": name, "rule": rule, "severity": severity, "subject": subject, "first_ns": wall_ns,
            "last_ns": wall_ns, "samples": 0, "title": title, "culprit_pid": None, "culprit_comm": None,
            "culprit_workload": None})
        group["samples"] += 1
        group["last_ns"], group["title"] = wall_ns, title  # rows come oldest first
        for key, value in (("culprit_pid", pid), ("culprit_comm", comm), ("culprit_workload", workload)):
            if value is not None:
                group[key] = value
    return sorted(groups.values(), key=lambda g: (g["host"], g["first_ns"], g["rule"], g["subject"]))


def _measured(by, record, previous, tables_previous):
    """[(value, order, row)] of one record's processes or connections with ``by`` known and above zero."""
    snapshot = typed(document_of(record.payload))
    if snapshot is None or not has_tables(snapshot):
        return []
    rates = rates_at(snapshot, previous, tables_previous)
    base = {"host": record.host, "seq": record.seq, "wall_ns": record.wall_ns}
    out = []
    if MEASURES[by][0] == "processes":
        process_rates = process_rates_of(rates)
        section = snapshot.processes if isinstance(snapshot.processes, dict) else {}
        for proc in section.get("processes") or ():
            if not isinstance(proc, dict) or not isinstance(proc.get("pid"), int):
                continue
            cpu_pct, io = process_rates(proc)
            rss = proc.get("rss_bytes") if isinstance(proc.get("rss_bytes"), int) else None
            value = {"cpu": cpu_pct, "rss": rss, "io": io}[by]
            if value is not None:
                out.append((value, proc["pid"], dict(base, value=float(value), pid=proc["pid"],
                                                     comm=proc.get("comm"), user=proc.get("user"), cpu_pct=cpu_pct,
                                                     rss_bytes=rss, io_bytes_per_s=io)))
        return out
    sockets = snapshot.sockets if isinstance(snapshot.sockets, dict) else {}
    table = sockets.get("tcp_table") if isinstance(sockets.get("tcp_table"), dict) else {}
    owners = sockets.get("owners") if isinstance(sockets.get("owners"), dict) else {}
    retrans_rate = connection_rates_of(rates)
    fields = table.get("fields") or ()
    for n, values in enumerate(table.get("rows") or ()):
        row = dict(zip(fields, values)) if isinstance(values, (list, tuple)) else {}
        value = retrans_rate(row)
        if value is None:
            continue
        holders = owners.get(str(row.get("inode"))) or ()
        holder = holders[0] if holders and isinstance(holders[0], dict) else {}
        rtt = row.get("rtt")
        local, remote = connection_key(row).split(" ")[1:3]
        out.append((value, n, dict(base, value=float(value), local=local, remote=remote, state=row.get("state"),
                                   total_retrans=row.get("total_retrans"),
                                   rtt_ms=None if rtt is None else round(rtt / 1000.0, 2), retrans_per_s=value,
                                   pid=holder.get("pid"), comm=holder.get("comm"))))
    return out


def _host_top(store, host, by, at_ns, window_s):
    """The measured rows of ``host`` at its newest record in the window with ``by`` known."""
    newest = store.at_or_before(host, at_ns)
    if newest is None or newest.wall_ns < at_ns - int(window_s * NS):
        return []
    records = [r for r in store.range(host, newest.boot_id, max(1, newest.seq - TABLES_LOOKBACK), newest.seq,
                                      newest.agent_id)]
    snapshots = {r.seq: typed(document_of(r.payload)) for r in records}
    for record in reversed(records):
        if record.wall_ns < at_ns - int(window_s * NS):
            return []
        current = snapshots[record.seq]
        if current is None or not has_tables(current):
            continue
        earlier = [r.seq for r in records if r.seq < record.seq and snapshots[r.seq] is not None
                   and has_tables(snapshots[r.seq])]
        tables_previous = snapshots[earlier[-1]] if earlier else None
        rows = _measured(by, record, snapshots.get(record.seq - 1), tables_previous)
        if rows:
            return rows
    return []


def top(store, by, at_ns, window_s, pattern=None, limit=20):
    """As fleet_clickhouse.top."""
    ranked = []
    for host in store.hosts():
        if _matches(host["name"], pattern):
            ranked.extend((-value, host["name"], order, row)
                          for value, order, row in _host_top(store, host["name"], by, at_ns, window_s) if value > 0)
    ranked.sort(key=lambda item: item[:3])
    return [row for *_, row in ranked[:limit]]
