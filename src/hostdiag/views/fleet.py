"""`diag fleet`: the hosts, their findings and the top processes or
connections across hosts, as tables of at most :data:`WIDTH` columns, and
the JSON documents of ``--format json``.

The rows are those of store/fleet_clickhouse.py (and of its SQLite fallback,
store/fleet_sqlite.py); times are printed in local time, to the second.
"""

import datetime

from hostdiag.views.text import human_bytes, human_count
from hostdiag.views.timefmt import format_span

WIDTH = 80
NS = 10**9


def _when(ns, date=True):
    if ns is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(ns / NS)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")


def _clip(text, width):
    text = str(text)
    return text if len(text) <= width else text[:max(0, width - 1)] + "…"


def _table(header, rows, right=(), widths=None):
    """Aligned columns, two spaces apart; a column wider than its cap in
    ``widths`` ({index: cap}) is clipped, and the last column gets what is
    left of WIDTH."""
    widths = dict(widths or {})
    table = [tuple(str(c) for c in header)] + [tuple("-" if c is None else str(c) for c in r) for r in rows]
    count = len(header)
    sizes = [max(len(r[i]) for r in table) for i in range(count)]
    for i, cap in widths.items():
        sizes[i] = min(sizes[i], cap)
    used = sum(sizes[:-1]) + 2 * (count - 1)
    sizes[-1] = max(4, min(sizes[-1], WIDTH - used))
    lines = []
    for row in table:
        cells = []
        for i, cell in enumerate(row):
            cell = _clip(cell, sizes[i])
            cells.append(cell.rjust(sizes[i]) if i in right else cell.ljust(sizes[i]))
        lines.append(_clip("  ".join(cells).rstrip(), WIDTH))
    return lines


def render_hosts(rows, store_name):
    """One line per host: name, newest record, lag, findings of that record."""
    if not rows:
        return "no hosts in %s\n" % store_name
    body = []
    for row in rows:
        if not row["findings"]:
            now = "-" if row["last_ns"] is None else "none"
        else:
            worst = "crit" if row["crit"] else "warn"
            now = "%d (%s): %s" % (row["findings"], worst, ", ".join(row["rules"]))
        body.append((row["host"], _when(row["last_ns"]), format_span(row["lag_s"]), now))
    return "\n".join(_table(("host", "last seen", "lag", "findings now"), body, right=(2,),
                            widths={0: 16})) + "\n"


def _culprit(row):
    if row.get("culprit_comm") is None and row.get("culprit_pid") is None:
        return row.get("culprit_workload") or "-"
    text = "%s[%s]" % (row.get("culprit_comm") or "?", "?" if row.get("culprit_pid") is None else row["culprit_pid"])
    return text


def render_findings(rows, from_ns, to_ns):
    """One line per (host, rule, severity, subject): first and last seen,
    samples, the culprit last named; then its newest title, indented."""
    span = "from %s to %s" % (_when(from_ns), _when(to_ns))
    if not rows:
        return "no findings %s\n" % span
    # Times of day only when every row is of one day (it heads the table then).
    days = {_when(ns)[:10] for row in rows for ns in (row["first_ns"], row["last_ns"])}
    one_day = len(days) == 1
    if one_day:
        span += " (times on %s)" % days.pop()
    body = []
    for row in rows:
        body.append((row["host"], row["severity"], row["rule"], _when(row["first_ns"], not one_day),
                     _when(row["last_ns"], not one_day), row["samples"], _culprit(row)))
    lines = _table(("host", "sev", "rule", "first", "last", "n", "culprit"), body, right=(5,),
                   widths={0: 14, 2: 20})
    out = [_clip("findings %s" % span, WIDTH), lines[0]]
    for line, row in zip(lines[1:], rows):
        out.append(line)
        out.append(_clip("    " + row["title"], WIDTH))
    return "\n".join(out) + "\n"


# --by for processes: (column header, the row's value as text)
_PROCESS_MEASURES = {
    "cpu": ("CPU %", lambda r: "-" if r["cpu_pct"] is None else "%.1f" % r["cpu_pct"]),
    "rss": ("RSS", lambda r: human_bytes(r["rss_bytes"])),
    "io": ("I/O /s", lambda r: human_bytes(r["io_bytes_per_s"])),
}


def render_top(rows, by, at_ns, window_s):
    """The top rows, largest first: processes (host, pid, comm, user, the
    measure, CPU, RSS, I/O, when) or connections (host, local -> remote,
    retransmits/s, RTT, holder)."""
    head = _clip("top by %s at %s (each host's newest tables, %s back)" % (
        by, _when(at_ns), format_span(window_s)), WIDTH)
    if not rows:
        return "%s: nothing\n" % head
    if by == "retrans":
        body = [(r["host"], "%s -> %s" % (r["local"], r["remote"]), human_count(r["value"]),
                 "-" if r["rtt_ms"] is None else "%.1f" % r["rtt_ms"],
                 "-" if r["pid"] is None else "%s[%s]" % (r["comm"], r["pid"])) for r in rows]
        lines = _table(("host", "connection", "retr/s", "rtt ms", "process"), body, right=(2, 3),
                       widths={0: 14, 1: 36})
    else:
        # The measure ranked first, then the other two.
        measures = [by] + [m for m in _PROCESS_MEASURES if m != by]
        body = [(r["host"], r["pid"], r["comm"], r["user"], *(_PROCESS_MEASURES[m][1](r) for m in measures),
                 _when(r["wall_ns"], date=False)) for r in rows]
        header = ("host", "pid", "comm", "user", *(_PROCESS_MEASURES[m][0] for m in measures), "sampled")
        lines = _table(header, body, right=(1, 4, 5, 6), widths={0: 14, 2: 15, 3: 8})
    return "\n".join([head] + lines) + "\n"


def fleet_document(store_name, question, rows, **context):
    """The ``--format json`` document: where from, what was asked, the rows."""
    return {"store": store_name, "question": question, **context, "rows": rows}
