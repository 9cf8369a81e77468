"""The ``hostdiag_cgroup_*`` and ``hostdiag_netns_*`` families of the
Prometheus exposition (:mod:`hostdiag.encode.prometheus` calls these).

Label cardinality is bounded whatever the host: the cgroup families carry
the :data:`TOP_CGROUPS` cgroups using most CPU time and the
:data:`TOP_CGROUPS` holding most memory (at most twice that many cgroups,
the root aside: its figures are the host's own), each labelled with its
path and its workload (``cgroup``; ``workload``, the unit's, container's
or pod's name, empty for a plain path; ``kind``); the namespace
families carry the namespaces the sample read (at most ``agent.max_netns``,
16 by default), labelled ``netns`` (its /run/netns name, else its inode) and
``workload``. Cumulative counters are exposed as counters (Prometheus takes
the rates); a cgroup that leaves the top lists, or a namespace the rotation
does not read this sample, has no series until it comes back (Prometheus
marks it stale).

:func:`summarize_workloads` ranks the rows once per new table (it passes
over every cgroup); :func:`workload_families` writes the families from its
result at each encoding.
"""

from hostdiag.derive.counters import get as _get
from hostdiag.findings.workloads import limit_bytes, workload_label

TOP_CGROUPS = 20

_PSI = ("cpu", "memory", "io")


def _number(value):
    return value if type(value) in (int, float) else None


def _top(rows, value, n):
    """The ``n`` rows with the largest ``value(row)`` above zero, largest first."""
    ranked = [(v, i) for i, row in enumerate(rows) if (v := _number(value(row))) and v > 0]
    ranked.sort(key=lambda item: (-item[0], item[1]))
    return [rows[i] for _, i in ranked[:n]]


def _workload_of(workloads, path):
    workload = workloads.get(path) if isinstance(workloads, dict) else None
    return workload if isinstance(workload, dict) else {"kind": "other", "name": path}


def _label(workload, path):
    """The ``workload`` label: a unit's, container's or pod's name in a few
    words; empty for a plain path (the ``cgroup`` label has it)."""
    return "" if workload.get("kind") in (None, "other") else workload_label(workload, path)


def summarize_workloads(snapshot):
    """``{"cgroups": {"count", "rows": [(labels, row)]}, "netns": {"total",
    "namespaces": [(labels, record)]}}`` of a plain-dict snapshot (either
    None without its section): the rows and labels the families need."""
    cgroups = snapshot.get("cgroups")
    summary = {"cgroups": None, "netns": None}
    workloads = cgroups.get("workloads") if isinstance(cgroups, dict) else None
    if isinstance(cgroups, dict):
        rows = [r for r in cgroups.get("cgroups") or ()
                if isinstance(r, dict) and isinstance(r.get("path"), str) and r["path"] != "/"]
        chosen = {}
        for row in _top(rows, lambda r: _get(r, "cpu", "usage_usec"), TOP_CGROUPS) + \
                _top(rows, lambda r: _get(r, "memory", "current"), TOP_CGROUPS):
            chosen.setdefault(row["path"], row)
        labelled = []
        for path, row in sorted(chosen.items()):
            workload = _workload_of(workloads, path)
            labelled.append(((("cgroup", path), ("workload", _label(workload, path)),
                              ("kind", workload.get("kind") or "other")), row))
        summary["cgroups"] = {"count": len(cgroups.get("cgroups") or ()), "rows": labelled}
    netns = snapshot.get("netns")
    if isinstance(netns, dict):
        labelled = []
        for record in netns.get("namespaces") or ():
            if not isinstance(record, dict) or record.get("host") or record.get("snmp") is None:
                continue
            name = record.get("name") if isinstance(record.get("name"), str) else str(record.get("inode"))
            cgroup = record.get("cgroup")
            label = _label(_workload_of(workloads, cgroup), cgroup) if isinstance(cgroup, str) else ""
            labelled.append(((("netns", name), ("workload", label)), record))
        summary["netns"] = {"total": netns.get("total"), "namespaces": labelled}
    return summary


def _scaled(value, factor):
    value = _number(value)
    return None if value is None else value * factor


# (family, type, help, unit, value of a cgroup row)
_CGROUP_FAMILIES = (
    ("hostdiag_cgroup_cpu_usage_seconds_total", "counter", "CPU time used by the cgroup (cpu.stat usage_usec; "
     "v1 cpuacct.usage).", "seconds", lambda r: _scaled(_get(r, "cpu", "usage_usec"), 1e-6)),
    ("hostdiag_cgroup_cpu_throttled_seconds_total", "counter", "Time the cgroup's run queues were throttled by "
     "its CPU quota (cpu.stat throttled_usec, summed over CPUs).", "seconds",
     lambda r: _scaled(_get(r, "cpu", "throttled_usec"), 1e-6)),
    ("hostdiag_cgroup_cpu_periods_total", "counter", "CFS enforcement periods with the cgroup runnable "
     "(cpu.stat nr_periods).", None, lambda r: _get(r, "cpu", "nr_periods")),
    ("hostdiag_cgroup_cpu_throttled_periods_total", "counter", "CFS periods in which the cgroup ran out of its "
     "quota (cpu.stat nr_throttled).", None, lambda r: _get(r, "cpu", "nr_throttled")),
    ("hostdiag_cgroup_cpu_limit_cpus", "gauge", "The cgroup's CPU quota in CPUs (cpu.max quota / period); "
     "absent without a quota.", None, lambda r: _cpu_limit(r)),
    ("hostdiag_cgroup_memory_bytes", "gauge", "Memory charged to the cgroup now (memory.current; v1 "
     "memory.usage_in_bytes).", "bytes", lambda r: _get(r, "memory", "current")),
    ("hostdiag_cgroup_memory_limit_bytes", "gauge", "The cgroup's memory limit (memory.max); absent without "
     "one.", "bytes", lambda r: limit_bytes(_get(r, "memory", "max"))),
    ("hostdiag_cgroup_oom_kills_total", "counter", "Processes the OOM killer killed in the cgroup "
     "(memory.events oom_kill).", None, lambda r: _get(r, "memory", "events", "oom_kill")),
    ("hostdiag_cgroup_pids", "gauge", "Tasks in the cgroup (pids.current).", None,
     lambda r: _get(r, "pids", "current")),
)

# (family, help, part, group, kernel counter) of a namespace record, all counters.
_NETNS_FAMILIES = (
    ("hostdiag_netns_tcp_out_segments_total", "TCP segments sent inside the namespace, new ones only (Tcp "
     "OutSegs).", "snmp", "Tcp", "OutSegs"),
    ("hostdiag_netns_tcp_retransmitted_segments_total", "TCP segments retransmitted inside the namespace (Tcp "
     "RetransSegs).", "snmp", "Tcp", "RetransSegs"),
    ("hostdiag_netns_tcp_listen_overflows_total", "Connections dropped on a full accept queue inside the "
     "namespace (TcpExt ListenOverflows).", "netstat", "TcpExt", "ListenOverflows"),
    ("hostdiag_netns_tcp_listen_drops_total", "SYNs dropped on listeners inside the namespace (TcpExt "
     "ListenDrops).", "netstat", "TcpExt", "ListenDrops"),
    ("hostdiag_netns_udp_receive_errors_total", "UDP datagrams not delivered inside the namespace (Udp "
     "InErrors).", "snmp", "Udp", "InErrors"),
    ("hostdiag_netns_udp_receive_buffer_errors_total", "UDP datagrams dropped on a full receive buffer inside "
     "the namespace (Udp RcvbufErrors).", "snmp", "Udp", "RcvbufErrors"),
)


def _cpu_limit(row):
    quota, period = _number(_get(row, "cpu", "quota_usec")), _number(_get(row, "cpu", "period_usec"))
    return quota / period if quota and quota > 0 and period else None


def workload_families(out, summary):
    """Write the cgroup and namespace families of :func:`summarize_workloads`'s
    ``summary`` to ``out`` (the exposition; its ``family`` method)."""
    cgroups = summary.get("cgroups")
    if cgroups is not None:
        out.family("hostdiag_cgroups", "gauge", "Cgroups in the cgroup table, all of them.",
                   (((), cgroups["count"]),))
        rows = cgroups["rows"]
        for name, kind, help_text, unit, value in _CGROUP_FAMILIES:
            out.family(name, kind, help_text + " The %d cgroups using most CPU and most memory."
                       % TOP_CGROUPS, ((labels, value(row)) for labels, row in rows), unit=unit)
        for name, kind, which in (("hostdiag_cgroup_pressure_waiting_seconds_total", "some", "some"),
                                  ("hostdiag_cgroup_pressure_stalled_seconds_total", "full", "all")):
            out.family(name, "counter",
                       "Time %s of the cgroup's non-idle tasks stalled on the resource (PSI %s total; "
                       "cgroup2 only)." % (which, kind),
                       ((labels + (("resource", resource),),
                         _scaled(_get(row, "pressure", resource, kind, "total_us"), 1e-6))
                        for labels, row in rows for resource in _PSI), unit="seconds")
    netns = summary.get("netns")
    if netns is not None:
        out.family("hostdiag_netns", "gauge", "Network namespaces found besides the host's, all of them.",
                   (((), netns["total"]),))
        for name, help_text, part, group, counter in _NETNS_FAMILIES:
            out.family(name, "counter", help_text + " The namespaces read this sample (agent.max_netns).",
                       ((labels, _get(record, part, group, counter)) for labels, record in netns["namespaces"]))
        out.family("hostdiag_netns_tcp_established", "gauge", "TCP connections established inside the "
                   "namespace now (Tcp CurrEstab).",
                   ((labels, _get(record, "snmp", "Tcp", "CurrEstab")) for labels, record in netns["namespaces"]))
