"""What changed between two moments of a host's history: pure functions of
two snapshots (as plain data, or typed with their rates and findings).

A moment here is anything with ``record`` (``boot_id``, ``seq``,
``wall_ns`` and ``snapshot``, the plain data), ``snapshot`` (the typed
:class:`~hostdiag.model.Snapshot`), ``rates`` (None without an earlier
record) and ``findings``. The process and socket tables come from the
newest record that has them at or before each moment (the agent takes them
every few records), given as (tables record, the tables record before it).
"""

import math

from hostdiag.derive.cgroup_rates import cgroup_rates
from hostdiag.derive.process_rates import process_key, process_rates, top_processes

DIFF_TOP = 15
PROCESS_TOP = 5
WORKLOAD_TOP = 5
NS = 1_000_000_000


def finding_changes(before, after):
    """{"appeared", "cleared", "persisting"}: findings keyed by (id, subject)."""
    def key(finding):
        return (finding.get("id"), finding.get("subject"))

    old = {key(f): f for f in before}
    new = {key(f): f for f in after}
    return {
        "appeared": [f for k, f in new.items() if k not in old],
        "cleared": [f for k, f in old.items() if k not in new],
        "persisting": [f for k, f in new.items() if k in old],
    }


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _leaves(data, prefix, out):
    if isinstance(data, dict):
        for key, value in data.items():
            _leaves(value, "%s.%s" % (prefix, key) if prefix else str(key), out)
    elif _number(data):
        out[prefix] = data
    return out


_RATE_SKIP = ("interval_s", "comparable", "reason")


def measures(snapshot, rates, filesystem_usage):
    """{path: number}: every rate of ``rates`` ("rate." paths) and the gauges
    of the snapshot that say how loaded the host is ("gauge." paths).
    ``filesystem_usage(fs)`` gives (space used %, inodes used %) of a
    filesystems entry: the caller passes the findings' own, so that the diff
    and the rules agree (findings sit right of derive)."""
    out = {}
    if rates is not None and rates.get("comparable"):
        for key, value in rates.items():
            if key not in _RATE_SKIP:
                _leaves(value, "rate." + key, out)
    cpu = snapshot.cpu
    if cpu is not None:
        for key in ("load1", "load5", "load15", "runnable", "threads"):
            value = (cpu.loadavg or {}).get(key)
            if _number(value):
                out["gauge.cpu.loadavg." + key] = value
        for key in ("procs_running", "procs_blocked"):
            value = getattr(cpu, key, None)
            if _number(value):
                out["gauge.cpu." + key] = value
    memory = snapshot.memory
    if memory is not None:
        for key, value in (memory.meminfo or {}).items():
            if _number(value):
                out["gauge.memory.meminfo." + key] = value
    for resource, kinds in (snapshot.pressure or {}).items():
        for kind, values in (kinds or {}).items():
            value = (values or {}).get("avg10")
            if _number(value):
                out["gauge.pressure.%s.%s.avg10_pct" % (resource, kind)] = value
    for fs in snapshot.filesystems or ():
        if isinstance(fs, dict) and fs.get("mountpoint"):
            space, inodes = filesystem_usage(fs)
            if space is not None:
                out["gauge.filesystems.%s.used_pct" % fs["mountpoint"]] = space
            if inodes is not None:
                out["gauge.filesystems.%s.inodes_used_pct" % fs["mountpoint"]] = inodes
    return out


def _floor(path):
    """The smallest change of a measure worth showing, in its own unit."""
    if path.endswith("_pct"):
        return 1.0
    if path.endswith("_bits_per_s"):
        return 8192.0
    if path.endswith("bytes_per_s"):
        return 1024.0
    if path.startswith("gauge.memory.meminfo."):
        return 1024.0 * 1024.0
    if path.startswith("gauge.cpu.loadavg.load"):
        return 0.1
    return 1.0


def counter_changes(before, after, top=DIFF_TOP):
    """The ``top`` biggest relative changes between two {path: number} maps:
    [{"path", "a", "b", "change", "relative"}], where ``relative`` is
    (b - a) / |a| (None when a is 0). Changes smaller than a floor per unit
    (1 point of a percentage, 1 KiB/s, 1 MiB of memory, 1 per second) are
    noise and left out. Ordered by |relative| (from 0: first), then by size."""
    rows = []
    for path in sorted(set(before) & set(after)):
        a, b = before[path], after[path]
        change = b - a
        if abs(change) < _floor(path):
            continue
        relative = change / abs(a) if a else None
        rows.append({"path": path, "a": a, "b": b, "change": change, "relative": relative})
    rows.sort(key=lambda r: (-(math.inf if r["relative"] is None else abs(r["relative"])),
                             -abs(r["change"]) / _floor(r["path"]), r["path"]))
    return rows[:top]


def process_view(current, previous, top=PROCESS_TOP):
    """The process table of a tables record: totals, rates against the
    previous tables record (None: RSS only) and the top lists; None when the
    record has no process table."""
    if current is None or not isinstance(current.snapshot.get("processes"), dict):
        return None
    section = current.snapshot["processes"]
    rates = {}
    if previous is not None and isinstance(previous.snapshot.get("processes"), dict):
        dt = ((current.snapshot.get("meta") or {}).get("mono_ns", 0)
              - (previous.snapshot.get("meta") or {}).get("mono_ns", 0)) / NS
        ticks = (current.snapshot.get("meta") or {}).get("clock_ticks")
        rates = process_rates(previous.snapshot["processes"], section, dt, ticks)
    by_key = {process_key(r): r for r in section.get("processes") or ()}
    return {"seq": current.seq, "wall_ns": current.wall_ns, "rated": bool(rates),
            "counts": section.get("counts") or {}, "top": top_processes(section, rates, top),
            "keys": by_key, "rates": rates}


def process_changes(a, b):
    """What changed in the process tables between two process views: totals,
    B's top CPU and RSS with their values at A, and the top processes of one
    side that the other side does not have (started, exited)."""
    if a is None or b is None:
        return None
    totals = {}
    for key in ("total", "threads"):
        totals[key] = {"a": a["counts"].get(key), "b": b["counts"].get(key)}
    rows = {}
    for category, measure in (("cpu", "cpu_pct"), ("rss", "rss_bytes")):
        out = []
        for row in b["top"].get(category) or ():
            key = process_key(row)
            before = None
            if key in a["keys"]:
                before = (a["rates"].get(key) or {}).get(measure) if measure == "cpu_pct" \
                    else a["keys"][key].get(measure)
            out.append({"pid": row["pid"], "comm": row.get("comm"), "user": row.get("user"),
                        "measure": measure, "a": before, "b": row.get(measure), "new": key not in a["keys"]})
        rows[category] = out
    exited = sorted({(r["pid"], r.get("comm")) for rows_ in a["top"].values() for r in rows_
                     if process_key(r) not in b["keys"]})
    started = sorted({(r["pid"], r.get("comm")) for rows_ in b["top"].values() for r in rows_
                      if process_key(r) not in a["keys"]})
    return {"totals": totals, "top": rows,
            "exited": [{"pid": pid, "comm": comm} for pid, comm in exited],
            "started": [{"pid": pid, "comm": comm} for pid, comm in started]}


def socket_changes(a, b):
    """What changed in the socket tables: totals, TCP states, listeners."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return None

    def listeners(section):
        return {"%s:%s" % (entry.get("local"), entry.get("local_port")): entry
                for entry in section.get("listeners") or () if isinstance(entry, dict)}

    totals = {}
    for key, value_of in (("tcp", lambda s: s.get("tcp_total")), ("udp", lambda s: s.get("udp_total")),
                          ("unix", lambda s: (s.get("unix") or {}).get("total"))):
        before, after = value_of(a), value_of(b)
        if before is not None or after is not None:
            totals[key] = {"a": before, "b": after}
    states_a, states_b = a.get("tcp_states") or {}, b.get("tcp_states") or {}
    states = {state: {"a": states_a.get(state, 0), "b": states_b.get(state, 0)}
              for state in sorted(set(states_a) | set(states_b))
              if states_a.get(state, 0) != states_b.get(state, 0)}
    listen_a, listen_b = listeners(a), listeners(b)
    return {"totals": totals, "tcp_states": states,
            "listeners_opened": sorted(set(listen_b) - set(listen_a)),
            "listeners_closed": sorted(set(listen_a) - set(listen_b))}



def _interval_s(current, previous):
    return ((current.snapshot.get("meta") or {}).get("mono_ns", 0)
            - (previous.snapshot.get("meta") or {}).get("mono_ns", 0)) / NS


def workload_view(current, previous):
    """The cgroup table of a tables record: ``{"seq", "rated", "rows": {path:
    {"cpu_pct", "memory_bytes"}}, "workloads": {path: workload}}``, CPU
    against the previous tables record (None without it); None when the
    record has no cgroup table."""
    if current is None or not isinstance(current.snapshot.get("cgroups"), dict):
        return None
    section = current.snapshot["cgroups"]
    rates = {}
    if previous is not None and isinstance(previous.snapshot.get("cgroups"), dict):
        rates = cgroup_rates(previous.snapshot["cgroups"], section, _interval_s(current, previous))
    rows = {}
    for row in section.get("cgroups") or ():
        if isinstance(row, dict) and isinstance(row.get("path"), str) and row["path"] != "/":
            memory = (row.get("memory") or {}).get("current") if isinstance(row.get("memory"), dict) else None
            rows[row["path"]] = {"cpu_pct": (rates.get(row["path"]) or {}).get("cpu_pct"),
                                 "memory_bytes": memory if _number(memory) else None}
    workloads = section.get("workloads")
    return {"seq": current.seq, "rated": any(r["cpu_pct"] is not None for r in rows.values()),
            "rows": rows, "workloads": workloads if isinstance(workloads, dict) else {}}


def workload_changes(a, b, top=WORKLOAD_TOP):
    """What changed in the cgroup tables between two workload views: B's top
    ``top`` cgroups by CPU and by memory with their values at A, and the
    cgroups only one side has (made, removed; at most ``top`` each)."""
    if a is None or b is None:
        return None

    def ranked(measure):
        return sorted((p for p in b["rows"] if _number(b["rows"][p][measure])),
                      key=lambda p: (-b["rows"][p][measure], p))[:top]

    out = {"a_seq": a["seq"], "b_seq": b["seq"], "rated": a["rated"] and b["rated"], "top": {},
           "made": sorted(set(b["rows"]) - set(a["rows"]))[:top],
           "removed": sorted(set(a["rows"]) - set(b["rows"]))[:top],
           "workloads": {}}
    for category, measure in (("cpu", "cpu_pct"), ("memory", "memory_bytes")):
        out["top"][category] = [{"path": p, "measure": measure, "a": (a["rows"].get(p) or {}).get(measure),
                                 "b": b["rows"][p][measure], "new": p not in a["rows"]} for p in ranked(measure)]
    named = {row["path"] for rows in out["top"].values() for row in rows} | set(out["made"])
    for path in named:
        out["workloads"][path] = b["workloads"].get(path)
    for path in out["removed"]:
        out["workloads"][path] = a["workloads"].get(path)
    return out


def diff_moments(a, b, tables_a, tables_b, filesystem_usage, top=DIFF_TOP):
    """The diff of moments ``a`` and ``b`` as plain data: how far apart,
    the findings that appeared, cleared or persisted, the ``top`` biggest
    changes of rates and gauges, and the changes in the process and socket
    tables of ``tables_a`` and ``tables_b`` ((tables record, the one before);
    either may be None). ``filesystem_usage``: see :func:`measures`."""
    tables = (tables_a, tables_b)
    views = [process_view(current, previous) for current, previous in tables]
    sockets = [current.snapshot.get("sockets") if current is not None else None for current, _ in tables]
    processes = process_changes(*views)
    workloads = workload_changes(*(workload_view(current, previous) for current, previous in tables))
    return {
        "apart_s": (b.record.wall_ns - a.record.wall_ns) / NS,
        "same_boot": a.record.boot_id == b.record.boot_id,
        "findings": finding_changes(a.findings, b.findings),
        "counters": counter_changes(measures(a.snapshot, a.rates, filesystem_usage),
                                    measures(b.snapshot, b.rates, filesystem_usage), top),
        "rates": {"a": a.rates is not None and bool(a.rates.get("comparable")),
                  "b": b.rates is not None and bool(b.rates.get("comparable"))},
        "processes": None if processes is None else dict(
            processes, a_seq=views[0]["seq"], b_seq=views[1]["seq"], rated=views[0]["rated"] and views[1]["rated"]),
        "sockets": socket_changes(*sockets),
        "workloads": workloads,
        "tables_seq": [None if current is None else current.seq for current, _ in tables],
    }
