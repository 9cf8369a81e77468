"""Findings rules over the cgroup table: a workload (unit, container, pod)
whose own limits bite while the host may look calm.

Each rule has the signature and yields the findings described in
:mod:`hostdiag.findings.rules`; the kernel's counts, summed up the tree, are
given to the innermost cgroup that has them (:func:`innermost`).
"""

from hostdiag.findings.culprits import top_culprits
from hostdiag.findings.finding import CRIT, WARN, finding
from hostdiag.findings.thresholds import limit_text, over
from hostdiag.findings.values import get, num, show
from hostdiag.findings.workloads import cgroup_rows, cpu_limit_pct, innermost, label_of, limit_bytes

_MIB = 1024.0 * 1024.0


def _cgroup_rates(rates):
    per = get(rates, "cgroups")
    return per if isinstance(per, dict) else {}


def _in_workload(snapshot, rates, path, measure):
    """The top processes of the cgroup at ``path`` (none for the root: the
    host's own findings name those)."""
    return top_culprits(snapshot, rates, measure, cgroup=path) if path != "/" else []


def _more(count):
    return "" if count <= 1 else " (%d cgroups over the limit)" % count


def _rounded_interval(rates):
    interval = num(get(rates, "interval_s"))
    return None if interval is None else round(interval, 1)


def _others(count):
    """The evidence count of cgroups over a limit: only when there are several."""
    return count if count > 1 else None


def _worst(values):
    """(path, value) of the largest value among the innermost cgroups of
    ``values`` ({path: value}), and how many innermost cgroups there are."""
    paths = innermost(sorted(values))
    path = max(paths, key=lambda p: (values[p], p))
    return path, values[path], len(paths)


def rule_cgroup_oom_kills(snapshot, rates, previous=None):
    hit = {path: kills for path, r in _cgroup_rates(rates).items()
           if path != "/" and over(kills := num(get(r, "oom_kills")), "cgroup_oom_kills")}
    if not hit:
        return
    path, kills, count = _worst(hit)
    row = next((r for r in cgroup_rows(snapshot) if r["path"] == path), {})
    yield finding(
        "cgroup_oom_kill", CRIT, "%d OOM kill(s) in %s in the last %s s%s"
        % (kills, label_of(snapshot, path), show(_rounded_interval(rates)), _more(count)),
        {"oom_kills": kills, "cgroups": _others(count), "memory_max_bytes": limit_bytes(get(row, "memory", "max"))},
        limit_text("OOM kills in one cgroup", "cgroup_oom_kills"), subject=path,
        culprits=_in_workload(snapshot, rates, path, "rss_bytes"))


def rule_cgroup_pids(snapshot, rates, previous=None):
    refused, near = {}, {}
    per = _cgroup_rates(rates)
    for row in cgroup_rows(snapshot):
        path = row["path"]
        current, maximum = num(get(row, "pids", "current")), num(get(row, "pids", "max"))
        forks = num(get(per, path, "forks_refused"))
        if forks:
            refused[path] = forks
        if current is not None and maximum and over(100.0 * current / maximum, "cgroup_pids_pct"):
            near[path] = 100.0 * current / maximum
    if not refused and not near:
        return
    if refused:
        path, forks, count = _worst(refused)
        severity, title = CRIT, "%d fork(s) refused at pids.max in %s%s" % (
            forks, label_of(snapshot, path), _more(count))
    else:
        path, pct, count = _worst(near)
        severity, title = WARN, "%.0f %% of pids.max in use in %s%s" % (pct, label_of(snapshot, path), _more(count))
    row = next((r for r in cgroup_rows(snapshot) if r["path"] == path), {})
    yield finding(
        "cgroup_pids", severity, title,
        {"pids_current": get(row, "pids", "current"), "pids_max": get(row, "pids", "max"),
         "forks_refused": refused.get(path), "cgroups": _others(count)},
        "%s, or forks refused > 0 (crit)" % limit_text("tasks", "cgroup_pids_pct", unit=" % of pids.max"),
        subject=path, culprits=_in_workload(snapshot, rates, path, "cpu_pct"))


def rule_cgroup_throttling(snapshot, rates, previous=None):
    per = _cgroup_rates(rates)
    hit = {path: pct for path, r in per.items()
           if over(pct := num(get(r, "throttled_periods_pct")), "cgroup_throttled_pct")}
    if not hit:
        return
    path, pct, count = _worst(hit)
    row = next((r for r in cgroup_rows(snapshot) if r["path"] == path), {})
    limit = cpu_limit_pct(row)
    yield finding(
        "cgroup_cpu_throttled", WARN, "CPU throttled %.0f %% of periods in %s%s%s"
        % (pct, label_of(snapshot, path), " (limit %s %% of a CPU)" % show(limit) if limit is not None else "",
           _more(count)),
        {"throttled_periods_pct": pct, "cpu_pct": get(per, path, "cpu_pct"), "cpu_limit_pct": limit,
         "cgroups": _others(count)},
        limit_text("throttled", "cgroup_throttled_pct", unit=" % of periods"), subject=path,
        culprits=_in_workload(snapshot, rates, path, "cpu_pct"))


def cgroup_memory_pct(row):
    """The memory a cgroup holds without its page cache (current − file, as
    the kernel reclaims cache first) as percent of its limit; None without a
    limit."""
    current, maximum = num(get(row, "memory", "current")), limit_bytes(get(row, "memory", "max"))
    if current is None or not maximum:
        return None
    cache = num(get(row, "memory", "stat", "file")) or 0
    return 100.0 * max(current - cache, 0) / maximum


def rule_cgroup_memory(snapshot, rates, previous=None):
    rows = {r["path"]: r for r in cgroup_rows(snapshot)}
    hit = {path: pct for path, row in rows.items() if over(pct := cgroup_memory_pct(row), "cgroup_memory_pct")}
    if not hit:
        return
    path, pct, count = _worst(hit)
    memory = rows[path]["memory"]
    yield finding(
        "cgroup_memory", WARN, "memory %.0f MiB of %.0f MiB (%.0f %%) in %s%s"
        % (memory["current"] / _MIB, memory["max"] / _MIB, pct, label_of(snapshot, path), _more(count)),
        {"used_pct": pct, "current_bytes": memory["current"], "max_bytes": memory["max"],
         "cgroups": _others(count)},
        limit_text("memory without cache", "cgroup_memory_pct", unit=" % of memory.max"), subject=path,
        culprits=_in_workload(snapshot, rates, path, "rss_bytes"))


def rule_cgroup_pressure(snapshot, rates, previous=None):
    """Pressure inside one cgroup while the host's own PSI line for that
    resource stays under its limit (when the host is under pressure too,
    rule_pressure says it)."""
    hit = {}
    for resource in ("cpu", "memory", "io"):
        host = num(get(snapshot.pressure, resource, "some", "avg10"))
        if host is None or over(host, "psi_%s_some_avg10" % resource):
            continue
        for row in cgroup_rows(snapshot):
            avg10 = num(get(row, "pressure", resource, "some", "avg10"))
            if row["path"] != "/" and over(avg10, "cgroup_psi_some_avg10"):
                key = (row["path"], resource)
                hit[key] = (avg10, host)
    if not hit:
        return
    paths = innermost(sorted({path for path, _ in hit}))
    (path, resource), (avg10, host) = max(((k, v) for k, v in hit.items() if k[0] in paths),
                                          key=lambda item: (item[1][0], item[0]))
    yield finding(
        "cgroup_pressure", WARN, "%s pressure %.0f %% in %s while the host shows %.0f %%%s"
        % (resource, avg10, label_of(snapshot, path), host, _more(len(paths))),
        {"avg10": avg10, "host_avg10": host, "cgroups": _others(len(paths))},
        limit_text("%s some avg10 in one cgroup" % resource, "cgroup_psi_some_avg10", unit=" %"),
        subject=path,
        culprits=_in_workload(snapshot, rates, path, "cpu_pct" if resource == "cpu" else
                              "rss_bytes" if resource == "memory" else "io_bytes_per_s"))
