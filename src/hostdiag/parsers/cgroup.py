"""Parsers for cgroup interface files, v2 (unified) and v1 (per controller).

Like every parser here they take ``bytes``, do no I/O and return ``(result,
malformed)`` where ``malformed`` counts the lines skipped. Units are the
kernel's: ``*_usec`` microseconds, v1 ``cpuacct.usage`` and ``throttled_time``
nanoseconds, memory in bytes (``memory.stat`` counters in bytes, ``pg*`` in
events), ``cpuacct.stat`` in USER_HZ ticks.

A limit the kernel reports as unlimited (v2 ``max``, v1 ``-1`` or the
page-rounded ``LONG_MAX`` of ``memory.limit_in_bytes``) is the string
``"max"``, so that ``None`` keeps its one meaning: not read.

The table reads each cgroup directory through :func:`read_dir` (at the end
of this module), whose compiled twin is ``csrc/_cgroup.pyx``: without it the
table costs about 1.8 times the raw read of its files, with it about 1.2
(benchmarks/test_bench_cgroups.py).
"""

import errno
import os
import re

from hostdiag.parsers.pressure import parse_pressure

UNLIMITED = "max"
# memory.limit_in_bytes and memsw reads PAGE_COUNTER_MAX * PAGE_SIZE when no
# limit is set: LONG_MAX rounded down to a page (9223372036854771712 with 4 KiB
# pages; larger pages round lower). Anything at or above 2**62 is that value.
_V1_UNLIMITED_FLOOR = 1 << 62

# One "key value" line of a flat-keyed file (cpu.stat, memory.stat,
# memory.events, pids.events, memory.oom_control, cpuacct.stat). Values past 20
# digits do not fit a u64 and are not taken.
_KEYED_LINE = re.compile(rb"^([A-Za-z0-9_.]{1,64}) (\d{1,20})$", re.MULTILINE)


def _line_count(data):
    """Lines in ``data``, counting a last line without its newline."""
    if not data:
        return 0
    return data.count(b"\n") + (data[-1:] != b"\n")


def parse_keyed(data, keys):
    """A flat-keyed file → (a tuple of int or None, one per key in ``keys``).

    ``keys`` is a tuple of the kernel's keys (bytes); a key the file lacks is
    None, a key given twice keeps its last value. Every line that is not
    ``key value`` with a non-negative integer value is malformed (counted,
    skipped), whether or not its key is wanted.
    """
    pairs = _KEYED_LINE.findall(data)
    malformed = _line_count(data) - len(pairs)
    found = dict(pairs)
    return tuple(int(found[key]) if key in found else None for key in keys), malformed


def parse_value(data):
    """A single-value file (``memory.current``, ``pids.max``, ``cpuacct.usage``,
    ``memory.limit_in_bytes``…) → int, ``"max"`` when unlimited, or None.

    Unlimited is ``max`` (v2, v1 pids), ``-1`` (v1 ``cfs_quota_us``) or the
    v1 page counter's ceiling (at or above 2**62).
    """
    token = data.strip()
    if token == b"max" or token == b"-1":
        return UNLIMITED, 0
    if token.isdigit() and len(token) <= 20:
        value = int(token)
        return (UNLIMITED if value >= _V1_UNLIMITED_FLOOR else value), 0
    return None, 1


def _u64_token(token):
    return int(token) if token.isdigit() and len(token) <= 20 else None


def parse_cpu_max(data):
    """v2 ``cpu.max`` (``$MAX $PERIOD``) → (quota µs or "max", period µs), or None."""
    tokens = data.split()
    if len(tokens) != 2:
        return None, 1
    quota = UNLIMITED if tokens[0] == b"max" else _u64_token(tokens[0])
    period = _u64_token(tokens[1])
    if quota is None or period is None:
        return None, 1
    return (quota, period), 0


def _device(token):
    major, sep, minor = token.partition(b":")
    if not sep or not major.isdigit() or not minor.isdigit():
        return None
    return token.decode("ascii")


IO_KEYS = (b"rbytes", b"wbytes", b"rios", b"wios", b"dbytes", b"dios")


def parse_io_stat(data):
    """v2 ``io.stat`` → {"MAJ:MIN": (rbytes, wbytes, rios, wios, dbytes, dios)}.

    Other keys on a line (iocost's ``cost.*``, blk-iolatency's ``depth``…)
    are left out. A line without a device or without any of the six keys is
    malformed; a key the line lacks is None.
    """
    devices = {}
    malformed = 0
    for line in data.split(b"\n"):
        tokens = line.split()
        if not tokens:
            continue
        device = _device(tokens[0])
        if device is None:
            malformed += 1
            continue
        counters = [None] * 6
        taken = 0
        for token in tokens[1:]:
            key, eq, raw = token.partition(b"=")
            if eq and key in _IO_INDEX and raw.isdigit() and len(raw) <= 20:
                counters[_IO_INDEX[key]] = int(raw)
                taken += 1
        if not taken:
            malformed += 1
            continue
        devices[device] = tuple(counters)
    return devices, malformed


_IO_INDEX = {key: index for index, key in enumerate(IO_KEYS)}
_BLKIO_OPS = {b"Read": 0, b"Write": 1, b"Discard": 2}


def parse_blkio(data):
    """A v1 ``blkio.throttle.io_service_bytes*`` or ``io_serviced*`` file →
    {"MAJ:MIN": (read, write, discard)} (bytes or I/Os, as the file counts).

    ``Sync``, ``Async`` and the per-device ``Total`` lines are sums of the
    others and are left out; the closing ``Total N`` line is not malformed.
    """
    devices = {}
    malformed = 0
    for line in data.split(b"\n"):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) == 2 and tokens[0] == b"Total" and tokens[1].isdigit():
            continue
        if len(tokens) != 3 or not tokens[2].isdigit() or len(tokens[2]) > 20:
            malformed += 1
            continue
        device = _device(tokens[0])
        if device is None:
            malformed += 1
            continue
        op = _BLKIO_OPS.get(tokens[1])
        if op is None:
            if tokens[1] not in (b"Sync", b"Async", b"Total"):
                malformed += 1
            continue
        counters = devices.get(device)
        if counters is None:
            counters = devices[device] = [None, None, None]
        counters[op] = int(tokens[2])
    return {device: tuple(counters) for device, counters in devices.items()}, malformed


# The v1 controllers a cgroup mount's super options may name; the other options
# (rw, relatime, nsdelegate, clone_children…) are not controllers.
V1_CONTROLLERS = frozenset(("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls",
                            "blkio", "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc"))


def _unescape(field):
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo``."""
    if b"\\" not in field:
        return field.decode("utf-8", "replace")
    return re.sub(rb"\\([0-7]{3})", lambda m: bytes((int(m.group(1), 8) & 0xFF,)), field).decode("utf-8", "replace")


def parse_cgroup_mounts(data):
    """``/proc/PID/mountinfo`` → (cgroup mounts, sysfs mount points), malformed.

    Each cgroup mount is {"type": "cgroup2"|"cgroup", "mount": the mount
    point, "root": the hierarchy path mounted there, "controllers": tuple of
    v1 controller names (``name=systemd`` included; empty for cgroup2),
    "device": "MAJ:MIN"}. A hierarchy mounted twice (bind mounts) is listed
    once, at the mount whose root is the shortest (the whole tree when it is
    mounted). Sysfs mount points are listed so that a cgroup mount under one
    can be found under a relocated sysfs root.
    """
    mounts = {}
    sysfs = []
    malformed = 0
    for line in data.split(b"\n"):
        if not line:
            continue
        fields = line.split(b" ")
        try:
            dash = fields.index(b"-", 6)
        except ValueError:
            malformed += 1
            continue
        if len(fields) < dash + 4:
            malformed += 1
            continue
        fstype = fields[dash + 1]
        if fstype == b"sysfs":
            sysfs.append(_unescape(fields[4]))
            continue
        if fstype not in (b"cgroup", b"cgroup2"):
            continue
        device = fields[2].decode("ascii", "replace")
        root = _unescape(fields[3])
        entry = {"type": fstype.decode("ascii"), "mount": _unescape(fields[4]), "root": root,
                 "controllers": (), "device": device}
        if fstype == b"cgroup":
            entry["controllers"] = tuple(
                opt for opt in fields[dash + 3].decode("utf-8", "replace").split(",")
                if opt in V1_CONTROLLERS or opt.startswith("name="))
        kept = mounts.get(device)
        if kept is None or len(root) < len(kept["root"]):
            mounts[device] = entry
    return (list(mounts.values()), sysfs), malformed


# ------------------------------------------------------------ the file reader
#
# The cgroup table reads each cgroup directory's files in one call per
# hierarchy: read_dir here, and its compiled twin in csrc/_cgroup.pyx (same
# names, same results; tests/test_cgroup_twins.py feeds both the same input).

VALUE, KEYED, CPU_MAX, IO_STAT, BLKIO, PRESSURE = range(6)
# PRESSURE files (cpu/memory/io.pressure) have /proc/pressure's format and parser.
_PARSE = {VALUE: parse_value, CPU_MAX: parse_cpu_max, IO_STAT: parse_io_stat, BLKIO: parse_blkio,
          PRESSURE: parse_pressure}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_CLOEXEC
# Cgroup files are small (a v2 memory.stat is about 1.5 KiB; io.stat grows by
# a line per device): one 64 KiB read nearly always holds the whole file.
_CHUNK = 64 * 1024


def parse_file(kind, keys, data):
    """Parse ``data`` as a file of ``kind``: (value, malformed). ``keys`` is the
    tuple of keys for KEYED, else unused."""
    if kind == KEYED:
        return parse_keyed(data, keys)
    return _PARSE[kind](data)


def _read_at(dirfd, name, cap):
    """The whole file ``name`` under ``dirfd``, or raise OSError (EFBIG past ``cap``)."""
    fd = os.open(name, _FILE_FLAGS, dir_fd=dirfd)
    try:
        data = os.read(fd, _CHUNK)
        if len(data) == _CHUNK:
            chunks = [data]
            size = len(data)
            while size <= cap:
                chunk = os.read(fd, _CHUNK)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > cap:
        raise OSError(errno.EFBIG, "larger than the read cap of %d bytes" % cap)
    return data


def read_dir(directory, specs, cap):
    """Read and parse the files ``specs`` of one cgroup ``directory`` (bytes).

    ``specs`` is a tuple of (file name bytes, kind, keys). Returns None when
    the directory is gone (ENOENT, ENOTDIR), else ``(nlink, inode, values,
    malformed, errors)``: the directory's link count (2 + its subdirectories
    on cgroupfs and most filesystems, so 2 means a leaf), its inode number (a
    cgroup removed and created again under the same path gets a new one; on
    cgroup2 it is the cgroup id), one value per spec
    (None for a file that could not be read), [(spec index, lines skipped)]
    and [(spec index, errno)] (EFBIG: larger than ``cap`` bytes). Other
    failures to open the directory raise OSError.
    """
    try:
        dirfd = os.open(directory, _DIR_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return None
    values = []
    malformed = []
    errors = []
    try:
        stat = os.fstat(dirfd)
        for index, (name, kind, keys) in enumerate(specs):
            try:
                data = _read_at(dirfd, name, cap)
            except OSError as exc:
                errors.append((index, exc.errno))
                values.append(None)
                continue
            value, bad = parse_file(kind, keys, data)
            if bad:
                malformed.append((index, bad))
            values.append(value)
    finally:
        os.close(dirfd)
    return stat.st_nlink, stat.st_ino, values, malformed, errors
