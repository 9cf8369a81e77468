"""The typed snapshot: raw cumulative counters of one moment, and its meta.

The model knows no file, socket or screen. Sections are ``None`` when their
source could not be read; the reason is in ``meta.errors``. Counters inside a
section are plain dicts keyed by the kernel's own names, so that a new kernel
field travels without a schema change. The records of the tables (processes,
TCP socket rows, listeners, links, disks, filesystems) are declared field by
field in :mod:`hostdiag.model.records`. Units are in docs/snapshot.md.
"""

from dataclasses import asdict, dataclass, field, fields
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

    def to_dict(self):
        """Plain data (dicts, lists, str, int, float, bool, None) for the encoders."""
        return asdict(self)

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
