"""The cgroup table: CPU, memory, I/O, pids and pressure of every cgroup, v2 or v1.

Hierarchies are found in ``/proc/self/mountinfo`` under the host root, never at
a fixed path: the cgroup2 mount (the unified tree) and the v1 mounts of the
``cpu``, ``cpuacct``, ``memory``, ``blkio`` and ``pids`` controllers. Each
resource is read from the hierarchy that holds its controller: the unified tree
when the controller is listed in its root's ``cgroup.controllers``, else the v1
mount that carries it. The unified tree always gives what needs no controller
there (``cpu.stat`` usage and the ``*.pressure`` files), so a hybrid host
(v1 controllers plus a v2 tree, like this project's test machine) merges both.

A row is one cgroup path as the host sees it (the mount's own root joined with
the path under the mount point), with the fields of every hierarchy that holds
that path. Units (docs/cgroups.md has the full table):

``cpu``       usage_usec, user_usec, system_usec, nr_periods, nr_throttled,
              throttled_usec (µs; v1's ns and USER_HZ ticks are converted),
              quota_usec (µs or "max"), period_usec (µs)
``memory``    current, max, high, swap_current, swap_max (bytes; limits may
              be "max"), events {oom, oom_kill, high, max} (counts), stat
              {anon, file, kernel, sock, shmem (bytes), pgmajfault (count)}
``io``        {"MAJ:MIN": {rbytes, wbytes, dbytes (bytes), rios, wios, dios}}
``pids``      current, max (count or "max"), events_max (forks refused)
``pressure``  {"cpu"|"memory"|"io": {"some", "full"}} as /proc/pressure

A group is None when no hierarchy holding the path has its controller; a field
is None when its file is absent or unreadable (v1 has no memory.high, no
memory.events oom/high counters, no memory.stat kernel/sock).

Bounds: the tree is walked breadth first, ``max_depth`` levels below each
hierarchy's root, and at most ``max_cgroups`` paths are sampled; directories
seen past that cap are counted in ``omitted``, so the cut keeps the top of the
tree. Races: a cgroup removed between the walk and its reads (ENOENT) is
skipped and counted in ``vanished``, like a vanished process; a file absent
from a cgroup whose controller is there (memory.swap.current without swap
accounting) is one ``missing`` problem per file name and sample, with the
count of cgroups; other read errors are one problem each.
"""

import os

from hostdiag.parsers.cgroup import (
    parse_blkio,
    parse_cgroup_mounts,
    parse_cpu_max,
    parse_io_stat,
    parse_keyed,
    parse_value,
)
from hostdiag.parsers.coldpath import parse_pressure
from hostdiag.sources.hostroot import IO_ERROR, MALFORMED, MISSING, SourceError

SOURCE = "cgroups"
# kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/
# cri-containerd-<id>.scope is 4 levels; user.slice/user-1000.slice/
# user@1000.service/app.slice/<unit> is 5.
DEFAULT_MAX_DEPTH = 5
# Rows per sample. At about 0.2 ms of CPU per cgroup (v1, five controllers),
# 2000 cgroups cost ~0.4 s: the ceiling for one sample.
DEFAULT_MAX_CGROUPS = 2000
# The v1 controllers read, in the order their files are read for a row.
V1_READ = ("cpu", "cpuacct", "memory", "blkio", "pids")
# v2 controllers whose files the table reads when the unified tree has them.
V2_READ = ("cpu", "memory", "io", "pids")
# The v2 controller that replaces each v1 one: a v1 mount is not read for a
# controller the unified tree has (a kernel binds each to one hierarchy only).
V1_TO_V2 = {"cpu": "cpu", "cpuacct": "cpu", "memory": "memory", "blkio": "io", "pids": "pids"}


def _merge(group, values):
    """Copy ``values`` into ``group``, keeping a value another file gave when
    this one has None (v2 cpu.stat in a hybrid tree has no throttling)."""
    for key, value in values.items():
        if value is not None or key not in group:
            group[key] = value


def _group(row, name):
    group = row[name]
    if group is None:
        group = row[name] = {}
    return group


def _memory(row):
    memory = row["memory"]
    if memory is None:
        memory = row["memory"] = {"current": None, "max": None, "high": None,
                                  "swap_current": None, "swap_max": None,
                                  "events": None, "stat": None}
    return memory


# Each handler takes (row, bytes) and returns the malformed line count.

_V2_CPU_STAT = {b"usage_usec": "usage_usec", b"user_usec": "user_usec", b"system_usec": "system_usec",
                b"nr_periods": "nr_periods", b"nr_throttled": "nr_throttled",
                b"throttled_usec": "throttled_usec"}
_V2_MEMORY_EVENTS = {b"oom": "oom", b"oom_kill": "oom_kill", b"high": "high", b"max": "max"}
_V2_MEMORY_STAT = {b"anon": "anon", b"file": "file", b"kernel": "kernel", b"sock": "sock",
                   b"shmem": "shmem", b"pgmajfault": "pgmajfault"}
_PIDS_EVENTS = {b"max": "events_max"}


def _v2_cpu_stat(row, data):
    values, bad = parse_keyed(data, _V2_CPU_STAT)
    _merge(_group(row, "cpu"), values)
    return bad


def _cpu_max(row, data):
    values, bad = parse_cpu_max(data)
    if values is not None:
        _merge(_group(row, "cpu"), values)
    return bad


def _value_into(group_of, key):
    def handler(row, data):
        value, bad = parse_value(data)
        group_of(row)[key] = value
        return bad
    return handler


def _keyed_into(group_of, key, wanted):
    def handler(row, data):
        values, bad = parse_keyed(data, wanted)
        group_of(row)[key] = values
        return bad
    return handler


def _pids(row):
    return _group(row, "pids")


def _pids_events(row, data):
    values, bad = parse_keyed(data, _PIDS_EVENTS)
    _pids(row).update(values)
    return bad


def _io_stat(row, data):
    devices, bad = parse_io_stat(data)
    row["io"] = devices
    return bad


def _pressure_into(resource):
    def handler(row, data):
        value, bad = parse_pressure(data)
        _group(row, "pressure")[resource] = value
        return bad
    return handler


# v1 files.

_V1_CPU_STAT = {b"nr_periods": "nr_periods", b"nr_throttled": "nr_throttled",
                b"throttled_time": "throttled_time"}
_V1_CPUACCT_STAT = {b"user": "user", b"system": "system"}
_V1_OOM_CONTROL = {b"oom_kill": "oom_kill"}
_V1_MEMORY_STAT = {b"total_rss": "anon", b"total_cache": "file", b"total_shmem": "shmem",
                   b"total_pgmajfault": "pgmajfault"}


def _v1_cpu_stat(row, data):
    values, bad = parse_keyed(data, _V1_CPU_STAT)
    ns = values.pop("throttled_time")
    values["throttled_usec"] = ns // 1000 if ns is not None else None
    _merge(_group(row, "cpu"), values)
    return bad


def _v1_cpu_value(key):
    def handler(row, data):
        value, bad = parse_value(data)
        _group(row, "cpu")[key] = value
        return bad
    return handler


def _v1_cpuacct_usage(row, data):
    ns, bad = parse_value(data)
    _group(row, "cpu")["usage_usec"] = ns // 1000 if isinstance(ns, int) else None
    return bad


def _v1_cpuacct_stat(clock_ticks):
    def handler(row, data):
        ticks, bad = parse_keyed(data, _V1_CPUACCT_STAT)
        cpu = _group(row, "cpu")
        for name, key in (("user", "user_usec"), ("system", "system_usec")):
            value = ticks[name]
            cpu[key] = value * 1000000 // clock_ticks if value is not None else None
        return bad
    return handler


def _v1_memsw_usage(row, data):
    """memory.memsw.usage_in_bytes is memory plus swap: swap is the difference
    (memory.usage_in_bytes is read first)."""
    memsw, bad = parse_value(data)
    memory = _memory(row)
    current = memory["current"]
    if isinstance(memsw, int) and isinstance(current, int):
        memory["swap_current"] = max(memsw - current, 0)
    return bad


def _v1_failcnt(row, data):
    value, bad = parse_value(data)
    events = _memory(row)["events"]
    if events is None:
        events = _memory(row)["events"] = {"oom": None, "oom_kill": None, "high": None, "max": None}
    events["max"] = value if isinstance(value, int) else None
    return bad


def _v1_oom_control(row, data):
    values, bad = parse_keyed(data, _V1_OOM_CONTROL)
    events = _memory(row)["events"]
    if events is None:
        events = _memory(row)["events"] = {"oom": None, "oom_kill": None, "high": None, "max": None}
    events["oom_kill"] = values["oom_kill"]
    return bad


def _v1_memory_stat(row, data):
    values, bad = parse_keyed(data, _V1_MEMORY_STAT)
    values["kernel"] = None
    values["sock"] = None
    _memory(row)["stat"] = values
    return bad


def _v1_blkio(names):
    def handler(row, data):
        devices, bad = parse_blkio(data)
        io = row["io"]
        if io is None:
            io = row["io"] = {}
        for device, counters in devices.items():
            entry = io.get(device)
            if entry is None:
                entry = io[device] = dict.fromkeys(("rbytes", "wbytes", "rios", "wios", "dbytes", "dios"))
            entry[names[0]] = counters["read"]
            entry[names[1]] = counters["write"]
            entry[names[2]] = counters["discard"]
        return bad
    return handler


# (file, handler) per controller, in reading order. "core" files need no
# controller (v2 only).
V2_FILES = {
    "core": (("cpu.stat", _v2_cpu_stat),
             ("cpu.pressure", _pressure_into("cpu")),
             ("memory.pressure", _pressure_into("memory")),
             ("io.pressure", _pressure_into("io"))),
    "cpu": (("cpu.max", _cpu_max),),
    "memory": (("memory.current", _value_into(_memory, "current")),
               ("memory.max", _value_into(_memory, "max")),
               ("memory.high", _value_into(_memory, "high")),
               ("memory.swap.current", _value_into(_memory, "swap_current")),
               ("memory.swap.max", _value_into(_memory, "swap_max")),
               ("memory.events", _keyed_into(_memory, "events", _V2_MEMORY_EVENTS)),
               ("memory.stat", _keyed_into(_memory, "stat", _V2_MEMORY_STAT))),
    "io": (("io.stat", _io_stat),),
    "pids": (("pids.current", _value_into(_pids, "current")),
             ("pids.max", _value_into(_pids, "max")),
             ("pids.events", _pids_events)),
}


def v1_files(clock_ticks):
    """(file, handler) per v1 controller; cpuacct.stat is in USER_HZ ticks."""
    return {
        "cpu": (("cpu.stat", _v1_cpu_stat),
                ("cpu.cfs_quota_us", _v1_cpu_value("quota_usec")),
                ("cpu.cfs_period_us", _v1_cpu_value("period_usec"))),
        "cpuacct": (("cpuacct.usage", _v1_cpuacct_usage),
                    ("cpuacct.stat", _v1_cpuacct_stat(clock_ticks))),
        "memory": (("memory.usage_in_bytes", _value_into(_memory, "current")),
                   ("memory.limit_in_bytes", _value_into(_memory, "max")),
                   ("memory.memsw.usage_in_bytes", _v1_memsw_usage),
                   ("memory.failcnt", _v1_failcnt),
                   ("memory.oom_control", _v1_oom_control),
                   ("memory.stat", _v1_memory_stat)),
        "blkio": (("blkio.throttle.io_service_bytes_recursive", _v1_blkio(("rbytes", "wbytes", "dbytes"))),
                  ("blkio.throttle.io_serviced_recursive", _v1_blkio(("rios", "wios", "dios")))),
        "pids": (("pids.current", _value_into(_pids, "current")),
                 ("pids.max", _value_into(_pids, "max")),
                 ("pids.events", _pids_events)),
    }


class Hierarchy:
    """One mounted cgroup hierarchy the table reads.

    ``base`` is the mount point as a path under the host root, ``prefix`` the
    hierarchy path mounted there ("/" for the whole tree), ``groups`` the
    ((controller, ((file, handler), ...)), ...) read from it.
    """

    __slots__ = ("kind", "mount", "base", "prefix", "controllers", "groups")

    def __init__(self, kind, mount, base, prefix, controllers, groups):
        self.kind = kind
        self.mount = mount
        self.base = base
        self.prefix = prefix
        self.controllers = controllers
        self.groups = groups

    def describe(self):
        return {"type": self.kind, "mount": self.mount, "root": self.prefix,
                "controllers": list(self.controllers)}

    def cgroup_path(self, relative):
        """The host's cgroup path for a directory ``relative`` under the mount."""
        if self.prefix == "/":
            return relative
        return self.prefix if relative == "/" else self.prefix + relative


def _empty_row(path):
    return {"path": path, "cpu": None, "memory": None, "io": None, "pids": None, "pressure": None}


class CgroupTable:
    """The cgroups section of a snapshot, for one :class:`HostRoot`.

    The hierarchies are probed in the first sample and kept (mounts of cgroup
    hierarchies do not change under a running host); a later sample whose
    hierarchy roots have all gone probes again.
    """

    def __init__(self, root, max_depth=DEFAULT_MAX_DEPTH, max_cgroups=DEFAULT_MAX_CGROUPS,
                 clock_ticks=None):
        if max_depth < 0 or max_cgroups < 1:
            raise ValueError("max_depth must be >= 0 and max_cgroups >= 1")
        self.root = root
        self.max_depth = max_depth
        self.max_cgroups = max_cgroups
        self.clock_ticks = clock_ticks or os.sysconf("SC_CLK_TCK")
        self.hierarchies = None
        self.layout = None

    def host_path(self, mount, sysfs_points):
        """The mount point as a path under the host root: under the sysfs root
        when it sits under a sysfs mount, else under the root filesystem."""
        for point in sorted(sysfs_points, key=len, reverse=True):
            if mount == point or mount.startswith(point.rstrip("/") + "/"):
                return self.root.sys(mount[len(point):].lstrip("/"))
        return self.root.host(mount)

    def probe(self, problems):
        """Find the hierarchies; a list (empty when none is mounted)."""
        path = self.root.proc("self", "mountinfo")
        found = problems.parse(self.root, SOURCE, path, parse_cgroup_mounts)
        if found is None:
            return []
        mounts, sysfs_points = found
        v2 = next((m for m in mounts if m["type"] == "cgroup2"), None)
        v2_controllers = ()
        hierarchies = []
        if v2 is not None:
            base = self.host_path(v2["mount"], sysfs_points)
            listed = problems.read(self.root, SOURCE, os.path.join(base, "cgroup.controllers"))
            v2_controllers = tuple(c.decode("ascii", "replace") for c in (listed or b"").split())
            groups = [("core", V2_FILES["core"])]
            groups.extend((c, V2_FILES[c]) for c in V2_READ if c in v2_controllers)
            hierarchies.append(Hierarchy("cgroup2", v2["mount"], base, v2["root"], v2_controllers,
                                         tuple(groups)))
        files = v1_files(self.clock_ticks)
        for mount in mounts:
            if mount["type"] != "cgroup":
                continue
            read = tuple((c, files[c]) for c in V1_READ
                         if c in mount["controllers"] and V1_TO_V2[c] not in v2_controllers)
            if read:
                hierarchies.append(Hierarchy("cgroup", mount["mount"], self.host_path(mount["mount"], sysfs_points),
                                             mount["root"], mount["controllers"], read))
        if v2 is None:
            self.layout = "legacy" if hierarchies else None
        else:
            self.layout = "hybrid" if len(hierarchies) > 1 else "unified"
        return hierarchies

    def _walk(self, problems):
        """BFS over every hierarchy at once, level by level:
        ({cgroup path: [(hierarchy, directory, entry names)]}, vanished, omitted)."""
        rows = {}
        vanished = omitted = 0
        frontier = [(h, h.base, "/") for h in self.hierarchies]
        depth = 0
        while frontier:
            following = []
            for hierarchy, directory, relative in frontier:
                path = hierarchy.cgroup_path(relative)
                places = rows.get(path)
                if places is None and len(rows) >= self.max_cgroups:
                    omitted += 1
                    continue
                names = set()
                children = []
                try:
                    with os.scandir(directory) as entries:
                        for entry in entries:
                            if entry.is_dir(follow_symlinks=False):
                                children.append(entry.name)
                            else:
                                names.add(entry.name)
                except FileNotFoundError:
                    vanished += 1
                    continue
                except OSError as exc:
                    problems.add(SOURCE, directory, IO_ERROR, exc.strerror or str(exc))
                    continue
                if places is None:
                    places = rows[path] = []
                places.append((hierarchy, directory, names))
                if depth < self.max_depth:
                    prefix = "" if relative == "/" else relative
                    following.extend((hierarchy, directory + "/" + child, prefix + "/" + child)
                                     for child in children)
            frontier = following
            depth += 1
        return rows, vanished, omitted

    def collect(self, problems):
        """The cgroups section: {"layout", "hierarchies", "cgroups" (rows),
        "vanished", "omitted", "max_depth", "max_cgroups"}, or None (with a
        problem) when no cgroup hierarchy is mounted."""
        if self.hierarchies is None or not any(os.path.isdir(h.base) for h in self.hierarchies):
            self.hierarchies = self.probe(problems)
        if not self.hierarchies:
            problems.add(SOURCE, self.root.proc("self", "mountinfo"), MISSING,
                         "no cgroup hierarchy is mounted")
            return None
        places_by_path, vanished, omitted = self._walk(problems)
        read = self.root.read
        absent = {}
        malformed = {}
        cgroups = []
        for path, places in places_by_path.items():
            row = _empty_row(path)
            gone = False
            for hierarchy, directory, names in places:
                for controller, files in hierarchy.groups:
                    seen = False
                    missing = []
                    for name, handler in files:
                        if name not in names:
                            missing.append(name)
                            continue
                        seen = True
                        try:
                            data = read(directory + "/" + name)
                        except SourceError as exc:
                            if exc.kind == MISSING:
                                gone = True
                                break
                            problems.add(SOURCE, exc.path, exc.kind, exc.message)
                            continue
                        bad = handler(row, data)
                        if bad:
                            malformed[name] = malformed.get(name, 0) + bad
                    if gone:
                        break
                    # A file missing beside its controller's others is worth
                    # a problem; a controller absent altogether (not enabled
                    # in this v2 cgroup, or the root) is not.
                    if seen and path != "/":
                        for name in missing:
                            absent[name] = absent.get(name, 0) + 1
                if gone:
                    break
            if gone:
                vanished += 1
                continue
            cgroups.append(row)
        for name, count in absent.items():
            problems.add(SOURCE, name, MISSING, "absent in %d cgroup(s)" % count, count)
        for name, count in malformed.items():
            problems.add(SOURCE, name, MALFORMED, "%d malformed line(s) skipped" % count, count)
        return {"layout": self.layout,
                "hierarchies": [h.describe() for h in self.hierarchies],
                "cgroups": cgroups, "vanished": vanished, "omitted": omitted,
                "max_depth": self.max_depth, "max_cgroups": self.max_cgroups}

