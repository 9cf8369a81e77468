"""Per-cgroup rates from two samples of the cgroups section.

A cgroup is identified by its path and its directory's inode
(:func:`cgroup_key`, ``"path#inode"``): a cgroup removed and made again under
the same path between the samples is a new cgroup with no previous sample,
as a reused pid is a new process. Every rate is ``None`` (never negative or
huge) when the cgroup has no previous sample, when a counter went backwards,
when either side is ``None`` (no controller, file absent) or when the
interval is not positive.

:func:`cgroup_rates` returns ``{path: rates}`` for every cgroup of the current
sample, where rates are::

    cpu_pct                CPU time used (cpu usage_usec) as percent of one CPU
                           over the interval; above 100 for several busy CPUs
    throttled_time_pct     time the group's run queues were throttled by its CPU
                           quota (throttled_usec), percent of the interval; the
                           kernel sums it over CPUs, so it may exceed 100
    throttled_periods_pct  enforcement periods in which the group was throttled,
                           percent of the periods that elapsed with it runnable
                           (nr_throttled / nr_periods deltas); None without periods
    oom_kills              processes the OOM killer killed in the group in the
                           interval (memory.events oom_kill; v1 memory.oom_control),
                           a count
    memory_max_events      times the group hit its memory limit in the interval
                           (memory.events max; v1 memory.failcnt), a count
    major_faults_per_s     major page faults per second (memory.stat pgmajfault)
    read_bytes_per_s       storage bytes read / written per second, summed over
    write_bytes_per_s      the devices of io (a device the previous sample did
                           not list had done no I/O: io.stat lists a device from
                           its first I/O on)
    forks_refused          forks refused at pids.max in the interval (pids.events
                           max), a count
    pressure               {"cpu"|"memory"|"io": {"some_pct", "full_pct"}}: percent
                           of the interval in which some / all of the group's tasks
                           stalled (total_us, capped at 100); None outside cgroup2
"""

from hostdiag.derive.counters import get, growth, is_number

PSI = ("cpu", "memory", "io")
RATE_FIELDS = ("cpu_pct", "throttled_time_pct", "throttled_periods_pct", "oom_kills", "memory_max_events",
               "major_faults_per_s", "read_bytes_per_s", "write_bytes_per_s", "forks_refused", "pressure")


def cgroup_key(row):
    """``"path#inode"``, the identity of a cgroup row; None for a row without
    a str path (a damaged stored snapshot). A row without an inode is keyed by
    its path alone."""
    if not isinstance(row, dict) or not isinstance(row.get("path"), str):
        return None
    inode = row.get("inode")
    return "%s#%d" % (row["path"], inode) if isinstance(inode, int) else row["path"]


def _delta(old, new, *keys):
    """How much the counter at ``keys`` grew, or None (unknown, went backwards)."""
    return growth(get(old, *keys), get(new, *keys))


def _per_s(delta, dt_s, scale=1.0, cap=None):
    if delta is None:
        return None
    value = delta * scale / dt_s
    return min(value, cap) if cap is not None else value


def _io_bytes(old, new, name):
    """Bytes ``name`` (rbytes, wbytes) done in the interval over all devices."""
    old_io, new_io = old.get("io"), new.get("io")
    if not isinstance(old_io, dict) or not isinstance(new_io, dict):
        return None
    total = 0
    for device, counters in new_io.items():
        grew = growth(get(old_io, device, name) if device in old_io else 0, get(counters, name))
        if grew is None:
            return None
        total += grew
    return total


def _throttled_periods_pct(old, new):
    periods = _delta(old, new, "cpu", "nr_periods")
    throttled = _delta(old, new, "cpu", "nr_throttled")
    if periods is None or throttled is None or periods == 0:
        return None
    return min(100.0 * throttled / periods, 100.0)


def _pressure(old, new, dt_s):
    if not isinstance(new.get("pressure"), dict) or not isinstance(old.get("pressure"), dict):
        return None
    return {resource: {kind + "_pct": _per_s(_delta(old, new, "pressure", resource, kind, "total_us"),
                                             dt_s, 100.0 / 1e6, cap=100.0)
                       for kind in ("some", "full")}
            for resource in PSI}


def _rates(old, new, dt_s):
    return {
        "cpu_pct": _per_s(_delta(old, new, "cpu", "usage_usec"), dt_s, 100.0 / 1e6),
        "throttled_time_pct": _per_s(_delta(old, new, "cpu", "throttled_usec"), dt_s, 100.0 / 1e6),
        "throttled_periods_pct": _throttled_periods_pct(old, new),
        "oom_kills": _delta(old, new, "memory", "events", "oom_kill"),
        "memory_max_events": _delta(old, new, "memory", "events", "max"),
        "major_faults_per_s": _per_s(_delta(old, new, "memory", "stat", "pgmajfault"), dt_s),
        "read_bytes_per_s": _per_s(_io_bytes(old, new, "rbytes"), dt_s),
        "write_bytes_per_s": _per_s(_io_bytes(old, new, "wbytes"), dt_s),
        "forks_refused": _delta(old, new, "pids", "events_max"),
        "pressure": _pressure(old, new, dt_s),
    }


_NONE = dict.fromkeys(RATE_FIELDS)


def cgroup_rates(prev_section, cur_section, dt_s):
    """Rates of every cgroup of ``cur_section`` against ``prev_section``
    (``dt_s``: seconds between the samples; None or not positive makes every
    rate None). Keyed by path; see the module docstring for the rates."""
    previous = {}
    for row in prev_section.get("cgroups") or ():
        key = cgroup_key(row)
        if key is not None:
            previous[key] = row
    valid = is_number(dt_s) and dt_s > 0
    result = {}
    for row in cur_section.get("cgroups") or ():
        key = cgroup_key(row)
        if key is None:
            continue
        old = previous.get(key)
        result[row["path"]] = _rates(old, row, dt_s) if valid and old is not None else dict(_NONE)
    return result
