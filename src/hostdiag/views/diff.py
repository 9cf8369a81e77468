"""`diag diff` as text: the two moments, then what changed in findings,
counters, processes, sockets and workloads (the document of :mod:`hostdiag.derive.diff`)."""

import math

from hostdiag.findings.workloads import workload_label

from hostdiag.views.history import short_boot
from hostdiag.views.text import human_bits, human_bytes, human_count
from hostdiag.views.timefmt import format_span


def value_text(path, value):
    """A measure's value with the unit its path implies (``_pct``, ``_bytes``, ``_per_s``...)."""
    if value is None:
        return "-"
    if path.endswith("_pct"):
        return "%.1f%%" % value
    if path.endswith("_bits_per_s"):
        return human_bits(value, "/s")
    if path.endswith("bytes_per_s"):
        return human_bytes(value, "/s")
    if path.endswith("_bytes") or path.startswith("gauge.memory.meminfo."):
        return human_bytes(value)
    if path.endswith("_per_s"):
        return human_count(round(value, 1), "/s")
    if isinstance(value, float):
        return "%.2f" % value if abs(value) < 100 else human_count(round(value))
    return human_count(value)


def _change(row):
    if row["relative"] is None:
        return "from 0"
    return "%+.0f%%" % (100.0 * row["relative"]) if abs(row["relative"]) < 100 else "x%.0f" % (
        row["b"] / row["a"] if row["a"] else math.inf)


def render_diff(diff):
    lines = []
    a, b = diff["a"], diff["b"]
    source = diff["source"]
    where = ("agent %s" % source.get("address")) if source.get("source") == "agent" else (
        "store %s host %s" % (source.get("store"), source.get("host")))
    lines.append("diff  %s  %s" % (source.get("hostname") or "?", where))
    for name, moment in (("A", a), ("B", b)):
        record = moment["record"]
        lines.append("  %s  %s  %s seq %d  (asked %s)" % (
            name, record["time"], short_boot(record["boot_id"]), record["seq"], moment["asked"]))
    lines.append("  B - A = %s%s" % (format_span(diff["apart_s"]), "" if diff["same_boot"] else
                                     "  (different boots: the host rebooted between them)"))

    findings = diff["findings"]
    lines.append("FINDINGS")
    changed = False
    for label, key in (("appeared", "appeared"), ("cleared", "cleared"), ("still", "persisting")):
        for finding in findings[key]:
            changed = True
            lines.append("  %-9s %-4s  %s  [%s]" % (label, str(finding.get("severity", "")).upper(),
                                                   finding.get("title"), finding.get("id")))
    if not changed:
        lines.append("  none at either moment")

    lines.append("COUNTERS  biggest relative changes of rates and gauges, A -> B")
    if not diff["rates"]["a"] or not diff["rates"]["b"]:
        lines.append("  (rates missing at %s: no earlier record of that boot; gauges only there)"
                     % " and ".join(n for n in ("A", "B") if not diff["rates"][n.lower()]))
    if diff["counters"]:
        width = min(56, max(len(r["path"]) for r in diff["counters"]))
        for row in diff["counters"]:
            lines.append("  %-*s  %12s -> %-12s %s" % (width, row["path"], value_text(row["path"], row["a"]),
                                                        value_text(row["path"], row["b"]), _change(row)))
    else:
        lines.append("  no change above the noise floor")

    processes = diff["processes"]
    lines.append("PROCESSES")
    if processes is None:
        missing = [name for name, seq in zip("AB", diff["tables_seq"]) if seq is None]
        if missing:
            lines.append("  not in these snapshots: no record with the process table at or before %s (the agent "
                         "takes it every agent.table_every records)" % " and ".join(missing))
        else:
            lines.append("  not in these snapshots")
    else:
        totals = processes["totals"]
        lines.append("  tables of seq %s and %s: %s -> %s processes, %s -> %s threads" % (
            processes["a_seq"], processes["b_seq"], totals["total"]["a"], totals["total"]["b"],
            totals["threads"]["a"], totals["threads"]["b"]))
        if not processes["rated"]:
            lines.append("  (CPU needs two tables in a row of the same boot: not kept here)")
        for category, label in (("cpu", "top cpu"), ("rss", "top rss")):
            for row in processes["top"].get(category) or ():
                path = row["measure"]  # cpu_pct or rss_bytes: value_text formats by the suffix
                lines.append(("  %-8s %7d %-16s %10s -> %-10s %s" % (
                    label, row["pid"], (row.get("comm") or "?")[:16], value_text(path, row["a"]),
                    value_text(path, row["b"]), "(new)" if row["new"] else "")).rstrip())
        if processes["started"]:
            lines.append("  started  " + ", ".join("%s[%d]" % (p["comm"], p["pid"]) for p in processes["started"]))
        if processes["exited"]:
            lines.append("  exited   " + ", ".join("%s[%d]" % (p["comm"], p["pid"]) for p in processes["exited"]))

    sockets = diff["sockets"]
    lines.append("SOCKETS")
    if sockets is None:
        lines.append("  not in these snapshots")
    else:
        totals = "  ".join("%s %s -> %s" % (k, v["a"], v["b"]) for k, v in sockets["totals"].items())
        lines.append("  totals   " + (totals or "-"))
        if sockets["tcp_states"]:
            lines.append("  tcp      " + "  ".join("%s %s -> %s" % (k, v["a"], v["b"])
                                                  for k, v in sockets["tcp_states"].items()))
        if sockets["listeners_opened"]:
            lines.append("  listen+  " + ", ".join(sockets["listeners_opened"]))
        if sockets["listeners_closed"]:
            lines.append("  listen-  " + ", ".join(sockets["listeners_closed"]))
    lines.extend(workload_lines(diff.get("workloads")))
    return "\n".join(lines) + "\n"


def _workload_name(workloads, path):
    workload = workloads.get(path)
    return workload_label(workload if isinstance(workload, dict) else {"kind": "other"}, path, width=32)


def workload_lines(workloads):
    """The WORKLOADS block of a diff (:func:`hostdiag.derive.diff.workload_changes`), as lines."""
    lines = ["WORKLOADS"]
    if workloads is None:
        lines.append("  not in these snapshots")
        return lines
    names = workloads["workloads"]
    lines.append("  cgroup tables of seq %s and %s" % (workloads["a_seq"], workloads["b_seq"]))
    if not workloads["rated"]:
        lines.append("  (CPU needs two tables in a row of the same boot: not kept here)")
    for category, label in (("cpu", "top cpu"), ("memory", "top mem")):
        for row in workloads["top"].get(category) or ():
            path = "x_pct" if row["measure"] == "cpu_pct" else "x_bytes"   # value_text formats by the suffix
            lines.append(("  %-8s %-32s %10s -> %-10s %s" % (
                label, _workload_name(names, row["path"]), value_text(path, row["a"]), value_text(path, row["b"]),
                "(new)" if row["new"] else "")).rstrip())
    if workloads["made"]:
        lines.append("  made     " + ", ".join(_workload_name(names, p) for p in workloads["made"]))
    if workloads["removed"]:
        lines.append("  removed  " + ", ".join(_workload_name(names, p) for p in workloads["removed"]))
    return lines

