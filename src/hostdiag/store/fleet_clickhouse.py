"""`diag fleet`'s three questions as SQL on the fleet store (store/clickhouse.py):
each is one SELECT that ClickHouse 18.16 runs (docs/fleet.md shows them).

* :func:`hosts`: every host, its newest record within ``within_s`` seconds
  of now, and the findings of that record (those of their own: a symptom
  folded under its cause is not counted again);
* :func:`findings`: which hosts had which findings from one time to another,
  one row per (host, rule, severity, subject) with the first and last time
  seen, symptoms folded under a cause included;
* :func:`top`: the top processes (by CPU, resident memory or I/O) or
  connections (by retransmits) across hosts, each host at its newest record
  with tables in the ``window_s`` seconds up to a moment.

store/fleet_sqlite.py answers the same from one collector's SQLite store,
with rows of the same shape. A host pattern is a shell glob (``web*``,
``db[12]``), matched against the host's name in ``collector.agents``.

Units: nanoseconds since the epoch (``*_ns``), seconds, percent of one CPU
(cpu_pct), bytes, bytes per second, segments per second.
"""

import math

from hostdiag.store.clickhouse import _quote

# --by: (table, the column ranked, what the rows are)
MEASURES = {
    "cpu": ("processes", "cpu_pct"),
    "rss": ("processes", "rss_bytes"),
    "io": ("processes", "io_bytes_per_s"),
    "retrans": ("sockets", "retrans_per_s"),
}
NS = 10**9


def _class_end(pattern, start):
    """The index of the ``]`` closing the class that opens at ``start``, or None
    (then the ``[`` is a plain character, as for fnmatch)."""
    i = start + 1
    if pattern[i:i + 1] == "!":
        i += 1
    if pattern[i:i + 1] == "]":
        i += 1
    end = pattern.find("]", i)
    return None if end < 0 else end


def glob_regex(pattern):
    """A shell glob (``*``, ``?``, ``[...]``) as an anchored RE2 regular expression."""
    out, i = ["^"], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[" and _class_end(pattern, i) is not None:
            end = _class_end(pattern, i)
            body = pattern[i + 1:end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            body = "".join("\\" + ch if ch in "\\[]^" else ch for ch in body)
            out.append("[" + ("^" if negate else "") + body + "]")
            i = end
        else:
            out.append("\\" + c if not c.isalnum() and c != "_" else c)
        i += 1
    return "".join(out) + "$"


def _host_filter(pattern, column="host"):
    return "" if pattern is None else " AND match(%s, %s)" % (column, _quote(glob_regex(pattern)))


def _time_range(from_ns, to_ns):
    """A WHERE part on both ``time`` (partition pruning) and ``wall_ns``."""
    return ("time >= toDateTime(%d) AND time <= toDateTime(%d) AND wall_ns >= %d AND wall_ns <= %d"
            % (from_ns // NS, math.ceil(to_ns / NS), from_ns, to_ns))


def hosts_sql(now_ns, within_s):
    """The SELECT of :func:`hosts`."""
    recent = _time_range(now_ns - int(within_s * NS), now_ns)
    newest = ("SELECT host, max(wall_ns) AS last_ns, argMax(boot_id, wall_ns) AS boot_id, "
              "argMax(seq, wall_ns) AS seq FROM records WHERE %s GROUP BY host" % recent)
    return (
        "SELECT host, last_ns, boot_id, seq, findings, crit, rules FROM ("
        "SELECT host, last_ns, boot_id, seq FROM (SELECT DISTINCT name AS host FROM hosts FINAL) "
        "ANY LEFT JOIN (%s) USING host) "
        "ANY LEFT JOIN (SELECT host, boot_id, seq, count() AS findings, countIf(severity = 'crit') AS crit, "
        "arraySort(groupUniqArray(rule)) AS rules FROM findings FINAL WHERE %s AND isNull(cause) AND "
        "(host, boot_id, seq) IN "
        "(SELECT host, boot_id, seq FROM (%s)) GROUP BY host, boot_id, seq) USING (host, boot_id, seq) "
        "ORDER BY host" % (newest, recent, newest))


def hosts(store, now_ns, within_s):
    """[{"host", "last_ns" (None: no record within ``within_s``), "boot_id",
    "seq", "lag_s", "findings", "crit", "rules"}] by host."""
    out = []
    for row in store.rows(hosts_sql(now_ns, within_s)):
        last = int(row["last_ns"]) or None
        out.append({"host": row["host"], "last_ns": last, "boot_id": row["boot_id"] if last else None,
                    "seq": int(row["seq"]) if last else None,
                    "lag_s": None if last is None else max(0.0, (now_ns - last) / NS),
                    "findings": int(row["findings"]), "crit": int(row["crit"]), "rules": list(row["rules"])})
    return out


def findings_sql(from_ns, to_ns, pattern):
    """The SELECT of :func:`findings`."""
    return (
        "SELECT host, rule, severity, ifNull(subject, '') AS subject, min(wall_ns) AS first_ns, "
        "max(wall_ns) AS last_ns, count() AS samples, argMax(title, wall_ns) AS title, "
        "argMax(culprit_pid, wall_ns) AS culprit_pid, argMax(culprit_comm, wall_ns) AS culprit_comm, "
        "argMax(culprit_workload, wall_ns) AS culprit_workload FROM findings FINAL WHERE %s%s "
        "GROUP BY host, rule, severity, subject ORDER BY host, first_ns, rule, subject"
        % (_time_range(from_ns, to_ns), _host_filter(pattern)))


def findings(store, from_ns, to_ns, pattern=None):
    """[{"host", "rule", "severity", "subject" ("" for none), "first_ns",
    "last_ns", "samples", "title" (the newest), "culprit_pid",
    "culprit_comm", "culprit_workload" (the newest named)}], by host, then
    first seen."""
    out = []
    for row in store.rows(findings_sql(from_ns, to_ns, pattern)):
        row.update(first_ns=int(row["first_ns"]), last_ns=int(row["last_ns"]), samples=int(row["samples"]),
                   culprit_pid=None if row["culprit_pid"] is None else int(row["culprit_pid"]))
        out.append(row)
    return out


def top_sql(by, at_ns, window_s, pattern, limit):
    """The SELECT of :func:`top`."""
    table, column = MEASURES[by]
    span = _time_range(at_ns - int(window_s * NS), at_ns)
    if table == "processes":
        columns = "pid, comm, user, cpu_pct, rss_bytes, io_bytes_per_s"
        order = "pid"
    else:
        columns = "local, local_port, remote, remote_port, state, total_retrans, rtt, retrans_per_s, pid, comm"
        order = "row"
    return (
        "SELECT host, seq, wall_ns, %s, %s AS value FROM %s FINAL WHERE %s AND (host, wall_ns) IN "
        "(SELECT host, max(wall_ns) FROM %s WHERE %s AND %s IS NOT NULL%s GROUP BY host) AND %s > 0 "
        "ORDER BY value DESC, host, %s LIMIT %d"
        % (columns, column, table, span, table, span, column, _host_filter(pattern), column, order, limit))


def top(store, by, at_ns, window_s, pattern=None, limit=20):
    """The ``limit`` largest ``by`` (a key of :data:`MEASURES`) across the
    hosts matching ``pattern``, each host at its newest record with that
    measure in the ``window_s`` seconds up to ``at_ns``; only values above
    zero. Rows: {"host", "seq", "wall_ns", "value", ...} with, for a process,
    "pid", "comm", "user", "cpu_pct", "rss_bytes", "io_bytes_per_s"; for a
    connection, "local", "remote" (address:port), "state", "total_retrans",
    "rtt_ms", "retrans_per_s", "pid", "comm" (its first holder)."""
    out = []
    for row in store.rows(top_sql(by, at_ns, window_s, pattern, limit)):
        item = {"host": row["host"], "seq": int(row["seq"]), "wall_ns": int(row["wall_ns"]),
                "value": float(row["value"])}
        if MEASURES[by][0] == "processes":
            item.update(pid=int(row["pid"]), comm=row["comm"], user=row["user"], cpu_pct=row["cpu_pct"],
                        rss_bytes=None if row["rss_bytes"] is None else int(row["rss_bytes"]),
                        io_bytes_per_s=row["io_bytes_per_s"])
        else:
            rtt = row["rtt"]
            item.update(local=_endpoint(row["local"], row["local_port"]),
                        remote=_endpoint(row["remote"], row["remote_port"]), state=row["state"],
                        total_retrans=None if row["total_retrans"] is None else int(row["total_retrans"]),
                        rtt_ms=None if rtt is None else round(rtt / 1000.0, 2), retrans_per_s=row["retrans_per_s"],
                        pid=None if row["pid"] is None else int(row["pid"]), comm=row["comm"])
        out.append(item)
    return out


def _endpoint(address, port):
    port = None if port is None else int(port)
    return ("[%s]:%s" if ":" in str(address) else "%s:%s") % (address, port)
