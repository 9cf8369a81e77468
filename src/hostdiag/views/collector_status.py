"""`diag collector --status`: each agent's state, lag, bytes and errors, as
the collector last wrote them to its store's status table."""

from hostdiag.views.text import human_bytes


def _age(ns, now_ns):
    if ns is None:
        return "-"
    seconds = max(0.0, (now_ns - ns) / 1e9)
    return "%.1fs" % seconds if seconds < 120 else "%dm" % (seconds // 60) if seconds < 7200 else "%dh" % (seconds // 3600)


def render_status(rows, hosts, now_ns):
    """The --status table: one line per agent, then its last error if any."""
    if not rows:
        return "no agent status in the store yet\n"
    stored = {h["name"]: h for h in hosts}
    header = ("agent", "state", "seq", "lag", "lag seqs", "records", "received", "stored", "gaps", "errors",
              "updated")
    lines = []
    table = [header]
    for row in rows:
        host = stored.get(row["name"], {})
        lag = row.get("lag_s")
        table.append((
            row["name"], row.get("state") or "?",
            "-" if row.get("newest_seq") is None else str(row["newest_seq"]),
            "-" if lag is None else "%.1fs" % lag,
            "-" if row.get("lag_seqs") is None else str(row["lag_seqs"]),
            str(host.get("records", "-")),
            human_bytes(row.get("bytes_received")),
            human_bytes(host.get("stored_bytes")),
            str(row.get("gaps", 0)), str(row.get("errors", 0)),
            _age(row.get("updated_ns"), now_ns) + " ago",
        ))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    for row in rows:
        if row.get("last_error"):
            lines.append("%s: last error %s ago: %s" % (row["name"], _age(row.get("last_error_ns"), now_ns),
                                                       row["last_error"]))
        if row.get("store_error"):
            lines.append("%s: store error: %s" % (row["name"], row["store_error"]))
    return "\n".join(lines) + "\n"


def status_document(store_dir, rows, hosts, now_ns):
    """The --status document for ``--format json``: each agent's status row
    with its stored bytes and records."""
    by_name = {h["name"]: h for h in hosts}
    agents = [dict(row, stored_bytes=by_name.get(row["name"], {}).get("stored_bytes"),
                   records=by_name.get(row["name"], {}).get("records")) for row in rows]
    return {"store": store_dir, "now_ns": now_ns, "agents": agents}
