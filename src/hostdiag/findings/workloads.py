"""Workloads in findings and views: a cgroup path's short name, its processes,
and the cgroups a rule looks at.

A workload comes from the cgroups section's ``workloads`` map (the sampler
resolves names from the host's disk); a path the map lacks (a stored snapshot
of an older agent) is named by the path itself. :func:`workload_label`
is the few words a title or a report line uses: ``nginx.service``,
``container web-7f9c``, ``pod shop/web-0``, or the path itself.
"""

from hostdiag.findings.values import get, num

# Characters of a workload label kept in a title or a report column.
LABEL_WIDTH = 40


def cgroup_rows(snapshot):
    """The cgroup rows of the snapshot (dicts with a str path), or []."""
    section = getattr(snapshot, "cgroups", None)
    rows = section.get("cgroups") if isinstance(section, dict) else None
    return [r for r in rows or () if isinstance(r, dict) and isinstance(r.get("path"), str)]


def workload_of(snapshot, path):
    """The workload dict of a cgroup ``path``."""
    known = get(getattr(snapshot, "cgroups", None), "workloads")
    workload = known.get(path) if isinstance(known, dict) else None
    return workload if isinstance(workload, dict) else {"kind": "other", "name": path}


def _clip(text, width, keep_end=False):
    if len(text) <= width:
        return text
    return "…" + text[len(text) - width + 1:] if keep_end else text[:width - 1] + "…"


def workload_label(workload, path=None, width=LABEL_WIDTH):
    """A workload in a few words (at most ``width`` characters; a bare path
    keeps its end, the part that tells it apart)."""
    kind = workload.get("kind")
    name = workload.get("name")
    if kind == "container":
        text = "container %s" % (name or workload.get("short_id") or "?")
    elif kind == "pod":
        pod = name or str(workload.get("id") or "?")[:8]
        namespace = workload.get("namespace")
        text = "pod %s/%s" % (namespace, pod) if namespace else "pod %s" % pod
    else:
        text = str(name or path or "?")
        return _clip(text, width, keep_end=kind == "other")
    return _clip(text, width)


def label_of(snapshot, path, width=LABEL_WIDTH):
    return workload_label(workload_of(snapshot, path), path, width)


def in_cgroup(record, path):
    """True when the process record's cgroup is ``path`` or below it."""
    cgroup = record.get("cgroup")
    if not isinstance(cgroup, str) or not isinstance(path, str):
        return False
    return cgroup == path or path == "/" or cgroup.startswith(path.rstrip("/") + "/")


def innermost(paths):
    """``paths`` without those that are an ancestor of another one: a count
    that the kernel sums up the tree (v2 memory.events, pressure) is
    attributed to the deepest cgroup showing it."""
    chosen = set(paths)
    return [p for p in paths
            if not any(other != p and other.startswith(p.rstrip("/") + "/") for other in chosen)]


def limit_bytes(value):
    """A memory limit in bytes, or None for "max" and unknown values. A v1
    unlimited group reads as a huge number (PAGE_COUNTER_MAX pages), above
    any real memory: None too."""
    value = num(value)
    return value if value is not None and value < (1 << 62) else None


def cpu_limit_pct(row):
    """The CPU quota of a cgroup row as percent of one CPU, or None (no
    quota: "max", v1's -1)."""
    quota, period = num(get(row, "cpu", "quota_usec")), num(get(row, "cpu", "period_usec"))
    if quota is None or quota <= 0 or not period:
        return None
    return 100.0 * quota / period
