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

``inode``     the directory's inode (the first hierarchy read): with the path,
              the identity of a cgroup, new when it is removed and made again
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
swap limit of its own, no memory.events oom/high counters, no memory.stat
kernel/sock).

Bounds: the tree is walked breadth first, ``max_depth`` levels below each
hierarchy's root, and at most ``max_cgroups`` paths are sampled; directories
seen past that cap are counted in ``omitted``, so the cut keeps the top of the
tree. Races: a cgroup removed between its parent's listing and its reads
(ENOENT) is skipped and counted once in ``vanished``, like a vanished
process, whichever hierarchy saw it go; a file absent
from a cgroup whose controller is there (memory.swap.current without swap
accounting) is one ``missing`` problem per file name and sample, with the
count of cgroups; other read errors are one problem each.
"""

import errno
import os
import sys

from hostdiag.parsers.cgroup import (
    BLKIO,
    CPU_MAX,
    IO_STAT,
    KEYED,
    PRESSURE,
    VALUE,
    parse_cgroup_mounts,
)
from hostdiag.parsers import live_cgroup
from hostdiag.sources.hostroot import MALFORMED, MISSING, TOO_LARGE, error_kind

SOURCE = "cgroups"
# kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/
# cri-containerd-<id>.scope is 4 levels; user.slice/user-1000.slice/
# user@1000.service/app.slice/<unit> is 5.
DEFAULT_MAX_DEPTH = 5
# Rows per sample. At about 0.1 ms of CPU per cgroup (v1, five controllers,
# compiled reader), 2000 cgroups cost ~0.2 s: the ceiling for one sample.
DEFAULT_MAX_CGROUPS = 2000
# Each cgroup file is read whole up to this size (io.stat grows by a line per
# device; nothing else passes a few KiB).
READ_CAP = 1024 * 1024
# The v1 controllers read, in the order their files are read for a row.
V1_READ = ("cpu", "cpuacct", "memory", "blkio", "pids")
# v2 controllers whose files the table reads when the unified tree has them.
V2_READ = ("cpu", "memory", "io", "pids")
# The v2 controller that replaces each v1 one: a v1 mount is not read for a
# controller the unified tree has (a kernel binds each to one hierarchy only).
V1_TO_V2 = {"cpu": "cpu", "cpuacct": "cpu", "memory": "memory", "blkio": "io", "pids": "pids"}

# Directory names are bytes (read_dir takes bytes); paths in rows are str,
# decoded as os.fsdecode does, without its per-call checks.
_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()

_CPU_KEYS = ("usage_usec", "user_usec", "system_usec", "nr_periods", "nr_throttled",
             "throttled_usec", "quota_usec", "period_usec")
_MEMORY_KEYS = ("current", "max", "high", "swap_current", "swap_max", "events", "stat")
_EVENT_KEYS = ("oom", "oom_kill", "high", "max")
_STAT_KEYS = ("anon", "file", "kernel", "sock", "shmem", "pgmajfault")
_IO_NAMES = ("rbytes", "wbytes", "rios", "wios", "dbytes", "dios")


def _cpu(row):
    cpu = row["cpu"]
    if cpu is None:
        cpu = row["cpu"] = dict.fromkeys(_CPU_KEYS)
    return cpu


def _memory(row):
    memory = row["memory"]
    if memory is None:
        memory = row["memory"] = dict.fromkeys(_MEMORY_KEYS)
    return memory


def _events(row):
    memory = _memory(row)
    events = memory["events"]
    if events is None:
        events = memory["events"] = dict.fromkeys(_EVENT_KEYS)
    return events


def _pids(row):
    pids = row["pids"]
    if pids is None:
        pids = row["pids"] = {"current": None, "max": None, "events_max": None}
    return pids


def _io(row):
    io = row["io"]
    if io is None:
        io = row["io"] = {}
    return io


# A file the table reads: (name, kind, keys for KEYED, handler). A handler
# puts one parsed value into the row.

def _keyed_cpu(names):
    def handler(row, values):
        cpu = _cpu(row)
        for name, value in zip(names, values):
            # A hybrid tree's v2 cpu.stat has no throttling: keep v1's.
            if value is not None or cpu[name] is None:
                cpu[name] = value
    return handler


def _v1_cpu_stat(row, values):
    periods, throttled, throttled_ns = values
    cpu = _cpu(row)
    cpu["nr_periods"] = periods
    cpu["nr_throttled"] = throttled
    cpu["throttled_usec"] = throttled_ns // 1000 if throttled_ns is not None else None


def _cpu_max(row, value):
    cpu = _cpu(row)
    cpu["quota_usec"], cpu["period_usec"] = value if value is not None else (None, None)


def _set(group_of, key):
    def handler(row, value):
        group_of(row)[key] = value
    return handler


def _memory_events(row, values):
    _events(row).update(zip(_EVENT_KEYS, values))


def _memory_stat(row, values):
    _memory(row)["stat"] = dict(zip(_STAT_KEYS, values))


def _pids_events(row, values):
    _pids(row)["events_max"] = values[0]


def _io_stat(row, devices):
    io = _io(row)
    for device, counters in devices.items():
        io[device] = dict(zip(_IO_NAMES, counters))


def _pressure(resource):
    def handler(row, value):
        pressure = row["pressure"]
        if pressure is None:
            pressure = row["pressure"] = {"cpu": None, "memory": None, "io": None}
        pressure[resource] = value
    return handler


def _v1_cpuacct_usage(row, ns):
    _cpu(row)["usage_usec"] = ns // 1000 if isinstance(ns, int) else None


def _v1_cpuacct_stat(clock_ticks):
    def handler(row, ticks):
        cpu = _cpu(row)
        for key, value in zip(("user_usec", "system_usec"), ticks):
            cpu[key] = value * 1000000 // clock_ticks if value is not None else None
    return handler


def _v1_memsw_usage(row, memsw):
    """memory.memsw.usage_in_bytes is memory plus swap: swap is the difference
    (memory.usage_in_bytes is read first)."""
    memory = _memory(row)
    current = memory["current"]
    if isinstance(memsw, int) and isinstance(current, int):
        memory["swap_current"] = max(memsw - current, 0)


def _v1_failcnt(row, value):
    _events(row)["max"] = value if isinstance(value, int) else None


def _v1_oom_control(row, values):
    _events(row)["oom_kill"] = values[0]


def _v1_memory_stat(row, values):
    anon, file, shmem, pgmajfault = values
    _memory(row)["stat"] = {"anon": anon, "file": file, "kernel": None, "sock": None,
                            "shmem": shmem, "pgmajfault": pgmajfault}


def _v1_blkio(names):
    """The handler of a blkio throttle file whose (read, write, discard)
    counters are the io fields ``names``."""
    def handler(row, devices):
        io = _io(row)
        for device, counters in devices.items():
            entry = io.get(device)
            if entry is None:
                entry = io[device] = dict.fromkeys(_IO_NAMES)
            entry[names[0]], entry[names[1]], entry[names[2]] = counters
    return handler


_V2_CPU_STAT = (b"usage_usec", b"user_usec", b"system_usec", b"nr_periods", b"nr_throttled",
                b"throttled_usec")

# (controller, ((file, kind, keys, handler), ...)); "core" files need no
# controller (v2 only).
V2_FILES = {
    "core": ((b"cpu.stat", KEYED, _V2_CPU_STAT, _keyed_cpu(_CPU_KEYS[:6])),
             (b"cpu.pressure", PRESSURE, None, _pressure("cpu")),
             (b"memory.pressure", PRESSURE, None, _pressure("memory")),
             (b"io.pressure", PRESSURE, None, _pressure("io"))),
    "cpu": ((b"cpu.max", CPU_MAX, None, _cpu_max),),
    "memory": ((b"memory.current", VALUE, None, _set(_memory, "current")),
               (b"memory.max", VALUE, None, _set(_memory, "max")),
               (b"memory.high", VALUE, None, _set(_memory, "high")),
               (b"memory.swap.current", VALUE, None, _set(_memory, "swap_current")),
               (b"memory.swap.max", VALUE, None, _set(_memory, "swap_max")),
               (b"memory.events", KEYED, (b"oom", b"oom_kill", b"high", b"max"), _memory_events),
               (b"memory.stat", KEYED, (b"anon", b"file", b"kernel", b"sock", b"shmem", b"pgmajfault"),
                _memory_stat)),
    "io": ((b"io.stat", IO_STAT, None, _io_stat),),
    "pids": ((b"pids.current", VALUE, None, _set(_pids, "current")),
             (b"pids.max", VALUE, None, _set(_pids, "max")),
             (b"pids.events", KEYED, (b"max",), _pids_events)),
}


def v1_files(clock_ticks):
    """The files per v1 controller; cpuacct.stat is in USER_HZ ticks."""
    return {
        "cpu": ((b"cpu.stat", KEYED, (b"nr_periods", b"nr_throttled", b"throttled_time"), _v1_cpu_stat),
                (b"cpu.cfs_quota_us", VALUE, None, _set(_cpu, "quota_usec")),
                (b"cpu.cfs_period_us", VALUE, None, _set(_cpu, "period_usec"))),
        "cpuacct": ((b"cpuacct.usage", VALUE, None, _v1_cpuacct_usage),
                    (b"cpuacct.stat", KEYED, (b"user", b"system"), _v1_cpuacct_stat(clock_ticks))),
        "memory": ((b"memory.usage_in_bytes", VALUE, None, _set(_memory, "current")),
                   (b"memory.limit_in_bytes", VALUE, None, _set(_memory, "max")),
                   (b"memory.memsw.usage_in_bytes", VALUE, None, _v1_memsw_usage),
                   (b"memory.failcnt", VALUE, None, _v1_failcnt),
                   (b"memory.oom_control", KEYED, (b"oom_kill",), _v1_oom_control),
                   (b"memory.stat", KEYED, (b"total_rss", b"total_cache", b"total_shmem", b"total_pgmajfault"),
                    _v1_memory_stat)),
        "blkio": ((b"blkio.throttle.io_service_bytes_recursive", BLKIO, None,
                   _v1_blkio(("rbytes", "wbytes", "dbytes"))),
                  (b"blkio.throttle.io_serviced_recursive", BLKIO, None,
                   _v1_blkio(("rios", "wios", "dios")))),
        "pids": ((b"pids.current", VALUE, None, _set(_pids, "current")),
                 (b"pids.max", VALUE, None, _set(_pids, "max")),
                 (b"pids.events", KEYED, (b"max",), _pids_events)),
    }


class Hierarchy:
    """One mounted cgroup hierarchy the table reads.

    ``base`` is the mount point as a path under the host root, ``prefix`` the
    hierarchy path mounted there ("/" for the whole tree). ``groups`` is the
    ((controller, files), ...) read from it, files as in ``V2_FILES``; they are
    kept flattened for ``read_dir``: ``specs``, ``handlers``, ``names``, and
    ``spans``, the (start, end) of each controller's files in them.
    """

    __slots__ = ("kind", "mount", "base", "prefix", "controllers", "specs", "handlers", "spans", "names")

    def __init__(self, kind, mount, base, prefix, controllers, groups):
        self.kind = kind
        self.mount = mount
        self.base = base
        self.prefix = prefix
        self.controllers = controllers
        files = [f for _, group in groups for f in group]
        self.specs = tuple((name, kind, keys) for name, kind, keys, _ in files)
        self.handlers = tuple(handler for _, _, _, handler in files)
        self.names = tuple(name.decode("ascii") for name, _, _, _ in files)
        spans = []
        start = 0
        for _, group in groups:
            spans.append((start, start + len(group)))
            start += len(group)
        self.spans = tuple(spans)

    def describe(self):
        return {"type": self.kind, "mount": self.mount, "root": self.prefix,
                "controllers": list(self.controllers)}

    def cgroup_path(self, relative):
        """The host's cgroup path for a directory ``relative`` under the mount."""
        if self.prefix == "/":
            return relative
        return self.prefix if relative == "/" else self.prefix + relative


def _empty_row(path):
    return {"path": path, "inode": None, "cpu": None, "memory": None, "io": None, "pids": None, "pressure": None}


class CgroupTable:
    """The cgroups section of a snapshot, for one :class:`HostRoot`.

    The hierarchies are probed in the first sample and kept (mounts of cgroup
    hierarchies do not change under a running host); a later sample whose
    hierarchy roots have all gone probes again. ``reader`` is the twin whose
    ``read_dir`` reads each cgroup directory (default: the live one,
    :data:`hostdiag.parsers.live_cgroup`); tests and benchmarks pass either.
    """

    def __init__(self, root, max_depth=DEFAULT_MAX_DEPTH, max_cgroups=DEFAULT_MAX_CGROUPS,
                 clock_ticks=None, reader=live_cgroup):
        if max_depth < 0 or max_cgroups < 1:
            raise ValueError("max_depth must be >= 0 and max_cgroups >= 1")
        self.root = root
        self.max_depth = max_depth
        self.max_cgroups = max_cgroups
        self.clock_ticks = clock_ticks or os.sysconf("SC_CLK_TCK")
        self.reader = reader
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
                base = self.host_path(mount["mount"], sysfs_points)
                hierarchies.append(Hierarchy("cgroup", mount["mount"], base, mount["root"],
                                             mount["controllers"], read))
        if v2 is None:
            self.layout = "legacy" if hierarchies else None
        else:
            self.layout = "hybrid" if len(hierarchies) > 1 else "unified"
        return hierarchies

    def _errors(self, hierarchy, directory, path, errors, absent, problems):
        """Sort a directory's read errors: True when the cgroup has vanished.

        ENOENT for every file of a controller is that controller not being
        there (not enabled in this v2 cgroup, or the root, which lacks most
        files): silent. ENOENT for some files of a controller is a file this
        kernel does not have (memory.swap.* without swap accounting): counted
        in ``absent``. ENOENT with the directory gone is a vanished cgroup.
        """
        missing = {index for index, code in errors if code in (errno.ENOENT, errno.ENOTDIR)}
        if missing and not os.path.isdir(directory):
            return True
        for index, code in errors:
            if index not in missing:
                kind = TOO_LARGE if code == errno.EFBIG else error_kind(OSError(code, ""))
                problems.add(SOURCE, os.path.join(os.fsdecode(directory), hierarchy.names[index]), kind,
                             os.strerror(code))
        if missing and path != "/":
            for start, end in hierarchy.spans:
                hit = [i for i in range(start, end) if i in missing]
                if hit and len(hit) < end - start:
                    for index in hit:
                        name = hierarchy.names[index]
                        absent[name] = absent.get(name, 0) + 1
        return False

    def collect(self, problems):
        """The cgroups section: {"layout", "hierarchies", "cgroups" (rows),
        "vanished", "omitted", "max_depth", "max_cgroups"}, or None (with a
        problem) when no cgroup hierarchy is mounted.

        The walk and the reads are one pass, breadth first over every
        hierarchy at once: each directory is opened once, its files read, and
        it is listed for children only when its link count says it has some
        (cgroupfs counts 2 + subdirectories), so leaves cost no listing.
        """
        if self.hierarchies is None or not any(os.path.isdir(h.base) for h in self.hierarchies):
            self.hierarchies = self.probe(problems)
        if not self.hierarchies:
            problems.add(SOURCE, self.root.proc("self", "mountinfo"), MISSING,
                         "no cgroup hierarchy is mounted")
            return None
        rows = {}
        gone = set()
        absent = {}
        malformed = {}
        vanished = omitted = 0
        max_cgroups = self.max_cgroups
        read_dir = self.reader.read_dir
        frontier = [(h, os.fsencode(h.base), "/") for h in self.hierarchies]
        depth = 0
        while frontier:
            following = []
            descend = depth < self.max_depth
            for hierarchy, directory, relative in frontier:
                path = hierarchy.cgroup_path(relative)
                if path in gone:
                    continue
                row = rows.get(path)
                if row is None:
                    if len(rows) >= max_cgroups:
                        omitted += 1
                        continue
                    row = rows[path] = _empty_row(path)
                try:
                    result = read_dir(directory, hierarchy.specs, READ_CAP)
                except OSError as exc:
                    problems.add(SOURCE, os.fsdecode(directory), error_kind(exc), exc.strerror or str(exc))
                    continue
                if result is not None:
                    nlink, inode, values, bad_lines, errors = result
                    skip = ()
                    if errors:
                        if self._errors(hierarchy, directory, path, errors, absent, problems):
                            result = None
                        else:
                            skip = {index for index, _ in errors}
                if result is None:
                    del rows[path]
                    gone.add(path)
                    vanished += 1
                    continue
                if row["inode"] is None:
                    row["inode"] = inode
                if skip:
                    for index, (handler, value) in enumerate(zip(hierarchy.handlers, values)):
                        if index not in skip:
                            handler(row, value)
                else:
                    for handler, value in zip(hierarchy.handlers, values):
                        handler(row, value)
                for index, count in bad_lines:
                    name = hierarchy.names[index]
                    malformed[name] = malformed.get(name, 0) + count
                # A link count of 2 is a leaf; below 2 the filesystem does not
                # count subdirectories (btrfs): list to be sure.
                if descend and nlink != 2:
                    prefix = "" if relative == "/" else relative
                    try:
                        with os.scandir(directory) as entries:
                            following.extend(
                                (hierarchy, entry.path,
                                 prefix + "/" + entry.name.decode(_FS_ENCODING, _FS_ERRORS))
                                for entry in entries if entry.is_dir(follow_symlinks=False))
                    except FileNotFoundError:
                        continue
            frontier = following
            depth += 1
        for name, count in absent.items():
            problems.add(SOURCE, name, MISSING, "absent in %d cgroup(s)" % count, count)
        for name, count in malformed.items():
            problems.add(SOURCE, name, MALFORMED, "%d malformed line(s) skipped" % count, count)
        return {"layout": self.layout,
                "hierarchies": [h.describe() for h in self.hierarchies],
                "cgroups": list(rows.values()), "vanished": vanished, "omitted": omitted,
                "max_depth": self.max_depth, "max_cgroups": max_cgroups}
