"""The typed snapshot: raw cumulative counters of one moment, and its meta.

The model knows no file, socket or screen. Sections are ``None`` when their
source could not be read; the reason is in ``meta.errors``. Counters inside a
section are plain dicts keyed by the kernel's own names, so that a new kernel
field travels without a schema change. The records of the tables (processes,
TCP socket rows, listeners, links, disks, filesystems) are declared field by
field in :mod:`hostdiag.model.records`. Units are in docs/snapshot.md.
"""

import gc
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Dict, List, Optional

SCHEMA_VERSION = 1


@dataclass
class ErrorRecord:
    """Something a source could not read. ``kind``: missing, access_denied,
    io_error, too_large, malformed, unavailable or truncated."""

    source: str
    path: str
    kind: str
    message: str
    count: int = 1


@dataclass
class Meta:
    hostname: Optional[str]
    boot_id: Optional[str]
    kernel: Optional[str]
    wall_ns: int            # CLOCK_REALTIME at the start of collection
    mono_ns: int            # CLOCK_MONOTONIC at the start of collection
    duration_ns: int        # how long collection took
    parser_impl: str        # "compiled" or "pure"
    clock_ticks: int        # USER_HZ: the unit of the CPU times in /proc/stat
    proc_root: str
    sys_root: str
    live: bool              # true when the roots are the running kernel's own
    schema_version: int = SCHEMA_VERSION
    errors: List[ErrorRecord] = field(default_factory=list)


@dataclass
class Cpu:
    """/proc/stat, /proc/loadavg and /proc/uptime. Times are in USER_HZ ticks."""

    total: Optional[Dict[str, Optional[int]]]
    cpus: Dict[str, Dict[str, Optional[int]]]
    ctxt: Optional[int]
    intr: Optional[int]
    softirq: Optional[int]
    processes: Optional[int]        # forks since boot
    procs_running: Optional[int]
    procs_blocked: Optional[int]
    btime: Optional[int]            # boot time, seconds since the epoch
    loadavg: Optional[Dict[str, Any]]
    uptime: Optional[Dict[str, float]]


@dataclass
class Memory:
    """/proc/meminfo in bytes (pages counts where the kernel gives no unit),
    /proc/vmstat as the kernel gives it, /proc/swaps in bytes."""

    meminfo: Optional[Dict[str, int]]
    vmstat: Optional[Dict[str, int]]
    swaps: Optional[List[Dict[str, Any]]]


@dataclass
class Snapshot:
    meta: Meta
    cpu: Optional[Cpu] = None
    memory: Optional[Memory] = None
    # {"cpu"|"memory"|"io"|"irq": {"some": {...}, "full": {...}|None}}; None
    # when the kernel has no PSI.
    pressure: Optional[Dict[str, Any]] = None
    disks: Optional[List[Dict[str, Any]]] = None            # records.DISK
    filesystems: Optional[List[Dict[str, Any]]] = None      # records.FILESYSTEM
    network: Optional[Dict[str, Any]] = None
    kernel: Optional[Dict[str, Any]] = None
    # The process, socket and cgroup tables; None in a system-only snapshot.
    processes: Optional[Dict[str, Any]] = None
    sockets: Optional[Dict[str, Any]] = None
    cgroups: Optional[Dict[str, Any]] = None     # records.CGROUP rows, records.WORKLOAD
    # The network namespaces besides the host's, with their counters and
    # sockets (records.NETNS); taken with the tables, None in between.
    netns: Optional[Dict[str, Any]] = None

    def to_dict(self):
        """Plain data (dicts, lists, str, int, float, bool, None) for the encoders,
        keys in field order.

        Shallow: the declared records (meta, its errors, cpu, memory) become new
        dicts, but the containers inside the sections are the snapshot's own,
        shared, not copied. A snapshot is read-only once taken (the sampler
        makes new sections for each sample), so the two stay equal; a deep
        copy (``dataclasses.asdict``) cost the agent 1.8 ms a sample. The one
        exception: a table map's rows given as tuples (the socket table's)
        become lists, as msgpack gives them back, so that the history can
        keep this map as the base of its next delta."""
        return _plain_record(self)

    @classmethod
    def from_dict(cls, data):
        """The inverse of :meth:`to_dict`; raises ValueError on a wrong shape."""
        if not isinstance(data, dict) or not isinstance(data.get("meta"), dict):
            raise ValueError("snapshot has no meta")
        try:
            meta = dict(data["meta"])
            meta["errors"] = [ErrorRecord(**e) for e in meta.get("errors") or ()]
            values = {"meta": Meta(**meta)}
            for f in fields(cls):
                if f.name == "meta":
                    continue
                value = data.get(f.name)
                if value is not None and f.name in _SECTION_TYPES:
                    value = _SECTION_TYPES[f.name](**value)
                values[f.name] = value
        except TypeError as exc:
            raise ValueError("snapshot has the wrong shape: %s" % exc) from None
        return cls(**values)


_SECTION_TYPES = {"cpu": Cpu, "memory": Memory}


def _plain_record(record):
    """A declared record as a new dict of its fields: nested records (and lists
    of them, as ``meta.errors``) converted the same way, anything else shared."""
    out = {}
    for f in fields(record):
        value = getattr(record, f.name)
        if is_dataclass(value):
            value = _plain_record(value)
        elif type(value) is list and value and is_dataclass(value[0]):
            value = [_plain_record(item) for item in value]
        elif type(value) is dict:
            value = _rows_as_lists(value)
        out[f.name] = value
    return out


def _rows_as_lists(section):
    """``section``, or a shallow copy of it where a table map's
    ({"fields": [...], "rows": [...]}) tuple rows are made lists."""
    out = section
    for key, table in section.items():
        if type(table) is dict and "fields" in table:
            rows = table.get("rows")
            if type(rows) is list and any(type(row) is tuple for row in rows):
                if out is section:
                    out = dict(section)
                out[key] = dict(table, rows=_lists_of(rows))
    return out


def _lists_of(rows):
    """``rows`` (tuples) as lists. The cyclic collector is paused meanwhile: it
    would otherwise run a few times over the thousands of new lists and over
    every older object (0.8 ms for 4,000 rows against 0.3 ms)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return list(map(list, rows))
    finally:
        if collecting:
            gc.enable()
