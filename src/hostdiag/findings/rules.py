"""Findings: small rules that name what is wrong on a host, with the numbers.

Each rule is a generator over ``(snapshot, rates)`` (``rates`` from
:func:`hostdiag.derive.derive_rates`, or None for a single snapshot) that
yields findings::

    {"id": rule id, "severity": "crit" | "warn", "title": one line,
     "evidence": {name: number}, "threshold": the limit that fired, as text,
     "subject": the disk, link, mount point, CPU or connection concerned, or None,
     "culprits": [the processes or connections behind it, most to blame first]}

Rules over rates stay quiet when ``rates`` is None or a rate is unknown; the
gauge rules (load, memory, PSI averages, filesystems, limits, kernel, process
states, full listeners) run on one snapshot. A missing section or field never
raises: the rule says nothing. Every limit is in :data:`THRESHOLDS`;
docs/findings.md says what each rule means and where to look next.

Culprits come from the process and socket tables when the snapshot has them
(else the list is empty) and the title names the first one. A process culprit
is ``{"kind": "process", "pid", "start_time", "comm", "user", "command"}`` plus
the measure it was ranked by (``cpu_pct``, ``io_bytes_per_s``, ``rss_bytes``,
``majflt_per_s``), or ``{"kind": "parent", ..., "zombies": n}``; a connection
is ``{"kind": "connection", "local", "remote", "state", "rtt_ms",
"total_retrans", "retrans_per_s", "processes"}`` and a listener ``{"kind":
"listener", "local", "backlog", "backlog_max", "processes"}``, where
``processes`` lists ``{"pid", "comm"}`` of the holders found (the caller maps
the sockets that :func:`socket_inodes_named` returns into
``sockets["owners"]``).
"""

import heapq

from hostdiag.derive.process_rates import process_key
from hostdiag.derive.socket_rates import listeners_overflowing, top_connections

CRIT = "crit"
WARN = "warn"
_SEVERITY_ORDER = {CRIT: 0, WARN: 1}

# Every limit the rules use: name -> value. Units are in the names (pct is
# percent 0-100, per_s is per second, ms milliseconds); a rule fires when the
# measured value is strictly above the limit unless its comment says otherwise.
THRESHOLDS = {
    "load1_per_cpu": 2.0,               # 1-minute load average per CPU (warn)
    "cpu_busy_pct": 90.0,               # all CPUs busy, % of CPU time (warn)
    "one_cpu_busy_pct": 95.0,           # any single CPU busy (warn)
    "cpu_iowait_pct": 20.0,             # all CPUs in iowait (warn)
    "cpu_steal_pct": 10.0,              # all CPUs stolen by the hypervisor (warn)
    "mem_available_warn_pct": 10.0,     # MemAvailable below this % of MemTotal (warn)
    "mem_available_crit_pct": 5.0,      # ... below this % (crit)
    "swap_pages_per_s": 100.0,          # pages swapped in + out per second (warn)
    "major_faults_per_s": 100.0,        # major page faults per second (warn)
    "oom_kills": 0,                     # OOM kills: in the interval (crit), since boot (warn)
    "psi_cpu_some_avg10": 20.0,         # PSI cpu some avg10, % (warn)
    "psi_memory_some_avg10": 10.0,      # PSI memory some avg10, % (warn)
    "psi_io_some_avg10": 20.0,          # PSI io some avg10, % (warn)
    "psi_memory_full_avg10": 5.0,       # PSI memory full avg10, % (warn)
    "disk_util_pct": 90.0,              # % of the interval a disk had I/O in flight (warn)
    "disk_await_ms": 50.0,              # mean read+write latency (warn) ...
    "disk_await_min_iops": 5.0,         # ... only at or above this many I/Os per second
    "fs_used_warn_pct": 90.0,           # filesystem space used, as df computes it (warn)
    "fs_used_crit_pct": 95.0,           # ... at or above (crit)
    "fs_inodes_warn_pct": 90.0,         # inodes used (warn)
    "fs_inodes_crit_pct": 95.0,         # ... at or above (crit)
    "nic_errors_per_s": 0.0,            # rx + tx errors per second on a link (warn)
    "nic_dropped_per_s": 10.0,          # rx + tx drops per second on a link (warn)
    "tcp_retransmit_pct": 2.0,          # retransmitted segments, % of all segments sent (warn) ...
    "tcp_retransmit_min_out_segs_per_s": 100.0,  # ... only at or above this send rate
    "tcp_listen_overflows_per_s": 0.0,  # accept queue full (TcpExt ListenOverflows) (warn)
    "tcp_listen_drops_per_s": 0.0,      # SYNs dropped on a listener (TcpExt ListenDrops) (warn)
    "tcp_estab_resets_per_s": 10.0,     # established connections reset (warn)
    "tcp_attempt_fails_per_s": 10.0,    # connection attempts failed (warn)
    "udp_in_errors_per_s": 0.0,         # UDP datagrams not delivered, incl. rcvbuf full (warn)
    "softnet_dropped_per_s": 0.0,       # packets dropped by a full backlog (warn)
    "softnet_time_squeeze_per_s": 10.0,  # NAPI ran out of budget or time (warn)
    "file_handles_pct": 80.0,           # allocated file handles, % of fs.file-max (warn)
    "conntrack_warn_pct": 80.0,         # conntrack entries, % of the table size (warn)
    "conntrack_crit_pct": 95.0,         # ... at or above (crit)
    "kernel_log_severity": 3,           # kernel log lines at err (3) or worse (warn; crit at <= 2)
    "procs_d_state": 0,                 # processes in D state (uninterruptible) in the snapshot (warn)
    "procs_zombie": 10,                 # zombie processes in the snapshot (warn)
    "tcp_conn_retrans_per_s": 5.0,      # segments one connection retransmits per second (warn)
}

# Processes or connections named per finding, and connections ranked per
# measure (the report shows the same ranking); processes named in a D-state finding.
CULPRITS = 3
TOP_CONNECTIONS = 3
NAMED_D_STATE = 5
# Full listeners named.
MAX_FULL_LISTENERS = 5
COMMAND_WIDTH = 80

# Filesystems that are mounted read-write in normal operation; read-only means
# the kernel remounted them after an error, or someone did it by hand.
READONLY_ALERT_FSTYPES = frozenset(("ext2", "ext3", "ext4", "xfs", "btrfs"))


def _num(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _get(data, *keys):
    """data[k1][k2]... for dicts (or attributes of the snapshot's typed
    sections); None where a level is missing."""
    for key in keys:
        if data is None:
            return None
        data = data.get(key) if isinstance(data, dict) else getattr(data, key, None)
    return data


def _over(value, name):
    value = _num(value)
    return value is not None and value > THRESHOLDS[name]


def _at_least(value, name):
    value = _num(value)
    return value is not None and value >= THRESHOLDS[name]


def _show(value):
    """A threshold or measurement for a title: 20 not 20.0, 2.5 stays."""
    value = _num(value)
    if value is None:
        return "?"
    if float(value).is_integer():
        return "%d" % value
    return "%.3g" % value if abs(value) < 10 else "%.0f" % value


def _limit(label, name, op=">", unit=""):
    return "%s %s %s%s" % (label, op, _show(THRESHOLDS[name]), unit)


def _finding(rule_id, severity, title, evidence, threshold, subject=None, culprits=()):
    clean = {}
    for key, value in evidence.items():
        value = _num(value)
        if value is not None:
            clean[key] = round(value, 2) if isinstance(value, float) else value
    culprits = list(culprits)
    if culprits:
        title = "%s; %s" % (title, culprit_text(culprits[0]))
    return {"id": rule_id, "severity": severity, "title": title, "evidence": clean,
            "threshold": threshold, "subject": subject, "culprits": culprits}


# --- culprits: who is behind a symptom ------------------------------------

def _rounded(value):
    value = _num(value)
    return round(value, 2) if isinstance(value, float) else value


def _command(record):
    args = record.get("cmdline")
    if record.get("kernel_thread") or not isinstance(args, (list, tuple)) or not args:
        return "[%s]" % record.get("comm")
    text = " ".join(str(a) for a in args)
    return text if len(text) <= COMMAND_WIDTH else text[:COMMAND_WIDTH - 3] + "..."


def _process(record, kind="process", **measures):
    culprit = {"kind": kind, "pid": record.get("pid"), "start_time": record.get("start_time"),
               "comm": record.get("comm"), "user": record.get("user"), "command": _command(record)}
    culprit.update((key, _rounded(value)) for key, value in measures.items())
    return culprit


def _records(snapshot):
    section = getattr(snapshot, "processes", None)
    records = section.get("processes") if isinstance(section, dict) else None
    return [r for r in records or () if isinstance(r, dict) and _num(r.get("pid")) is not None]


def _process_rates(rates, record):
    per = _get(rates, "processes")
    if not isinstance(per, dict) or _num(record.get("start_time")) is None:
        return {}
    return per.get(process_key(record)) or {}


def _io_bytes_per_s(r):
    read, write = _num(r.get("read_bytes_per_s")), _num(r.get("write_bytes_per_s"))
    return None if read is None and write is None else (read or 0) + (write or 0)


# measure name -> how to read it from (record, its rates)
_MEASURES = {
    "cpu_pct": lambda record, r: r.get("cpu_pct"),
    "io_bytes_per_s": lambda record, r: _io_bytes_per_s(r),
    "majflt_per_s": lambda record, r: r.get("majflt_per_s"),
    "rss_bytes": lambda record, r: record.get("rss_bytes"),
}


def top_culprits(snapshot, rates, measure, n=CULPRITS):
    """The ``n`` processes with the largest ``measure`` (a key of
    :data:`_MEASURES`) above zero, as process culprits; empty without a
    process table (or without rates, for a rate)."""
    read = _MEASURES[measure]
    ranked = []
    for record in _records(snapshot):
        value = _num(read(record, _process_rates(rates, record)))
        if value is not None and value > 0:
            ranked.append((value, -record["pid"], record))
    return [_process(record, **{measure: value})
            for value, _, record in heapq.nlargest(n, ranked, key=lambda item: item[:2])]


def _endpoint(address, port):
    return ("[%s]:%s" if ":" in str(address) else "%s:%s") % (address, port)


def _holders(snapshot, inode):
    owners = _get(snapshot.sockets, "owners")
    holders = owners.get(str(inode)) if isinstance(owners, dict) and inode else None
    return [{"pid": h.get("pid"), "comm": h.get("comm")} for h in holders or () if isinstance(h, dict)]


def _connection(snapshot, entry):
    rtt = _num(entry.get("rtt"))
    return {"kind": "connection",
            "local": _endpoint(entry.get("local"), entry.get("local_port")),
            "remote": _endpoint(entry.get("remote"), entry.get("remote_port")),
            "state": entry.get("state"), "rtt_ms": None if rtt is None else round(rtt / 1000.0, 2),
            "total_retrans": entry.get("total_retrans"),
            "retrans_per_s": _rounded(entry.get("retrans_per_s")),
            "processes": _holders(snapshot, entry.get("inode"))}


def _listener(snapshot, listener):
    return {"kind": "listener", "local": _endpoint(listener.get("local"), listener.get("local_port")),
            "backlog": listener.get("backlog"), "backlog_max": listener.get("backlog_max"),
            "processes": _holders(snapshot, listener.get("inode"))}


def _sockets(snapshot):
    sockets = getattr(snapshot, "sockets", None)
    return sockets if isinstance(sockets, dict) else None


# The last ranking computed, as (sockets section, socket rates, ranking).
_last_ranking = [None]


def connection_rankings(snapshot, rates):
    """``top_connections`` of the snapshot's sockets section with the socket
    rates (or None), :data:`TOP_CONNECTIONS` per measure; empty lists without a
    socket table. The report and several rules ask for the same ranking, which
    costs about a second per 100,000 connections, so the last one is kept
    (with the objects it was computed from, compared by identity: read it, do
    not change it)."""
    sockets = _sockets(snapshot)
    if sockets is None:
        return {"retrans": [], "rtt": [], "queue": []}
    per_connection = _get(rates, "sockets")
    per_connection = per_connection if isinstance(per_connection, dict) else None
    last = _last_ranking[0]
    if last is not None and last[0] is sockets and last[1] is per_connection:
        return last[2]
    ranking = top_connections(sockets, per_connection, TOP_CONNECTIONS)
    _last_ranking[0] = (sockets, per_connection, ranking)
    return ranking


def _retransmitting(snapshot, rates):
    """The top connections by retransmits per second, with a known rate above zero."""
    if not isinstance(_get(rates, "sockets"), dict):
        return []
    top = connection_rankings(snapshot, rates)
    return [e for e in top.get("retrans") or () if (_num(e.get("retrans_per_s")) or 0) > 0]


def _full_listeners(snapshot):
    sockets = _sockets(snapshot)
    return listeners_overflowing(sockets)[:MAX_FULL_LISTENERS] if sockets is not None else []


def socket_inodes_named(snapshot, rates):
    """The inodes of the sockets the rules may name: their holders are looked
    up by the caller into ``sockets["owners"]`` before :func:`evaluate`."""
    entries = _retransmitting(snapshot, rates) + _full_listeners(snapshot)
    return {e.get("inode") for e in entries if e.get("inode")}


def _owner_text(holders):
    if not holders:
        return ""
    first = holders[0]
    return " (%s[%s]%s)" % (first.get("comm"), first.get("pid"),
                            " +%d" % (len(holders) - 1) if len(holders) > 1 else "")


_MIB = 1024.0 * 1024.0
# measure -> its words in a title
_CULPRIT_UNITS = (
    ("cpu_pct", lambda v: "%.0f %% CPU" % v),
    ("io_bytes_per_s", lambda v: "%.1f MiB/s I/O" % (v / _MIB)),
    ("rss_bytes", lambda v: "%.0f MiB resident" % (v / _MIB)),
    ("majflt_per_s", lambda v: "%.0f major faults/s" % v),
)


def culprit_text(culprit):
    """One culprit as a few words: ``hd-burner[4242] 97 % CPU``, ``10.0.0.1:443 ->
    10.0.0.2:5123 12 retrans/s (nginx[812])``."""
    kind = culprit.get("kind")
    if kind == "connection":
        return "%s -> %s %s retrans/s%s" % (
            culprit.get("local"), culprit.get("remote"), _show(culprit.get("retrans_per_s")),
            _owner_text(culprit.get("processes")))
    if kind == "listener":
        return "%s backlog %s/%s%s" % (culprit.get("local"), culprit.get("backlog"),
                                       culprit.get("backlog_max"),
                                       _owner_text(culprit.get("processes")))
    name = "%s[%s]" % (culprit.get("comm"), culprit.get("pid"))
    if kind == "parent":
        return "%s has %s zombie(s)" % (name, culprit.get("zombies"))
    for key, words in _CULPRIT_UNITS:
        value = _num(culprit.get(key))
        if value is not None:
            return "%s %s" % (name, words(value))
    return name


# --- CPU and load ---------------------------------------------------------

def rule_load(snapshot, rates):
    cpu = snapshot.cpu
    ncpu = len(_get(cpu, "cpus") or ())
    load1 = _num(_get(cpu, "loadavg", "load1"))
    if not ncpu or load1 is None:
        return
    if _over(load1 / ncpu, "load1_per_cpu"):
        yield _finding(
            "load_high", WARN, "load %.2f on %d CPUs" % (load1, ncpu),
            {"load1": load1, "load5": _get(cpu, "loadavg", "load5"),
             "load15": _get(cpu, "loadavg", "load15"), "cpus": ncpu,
             "load1_per_cpu": load1 / ncpu, "procs_running": _get(cpu, "procs_running"),
             "procs_blocked": _get(cpu, "procs_blocked")},
            _limit("load1 per CPU", "load1_per_cpu"))


def rule_cpu_states(snapshot, rates):
    total = _get(rates, "cpu", "total")
    for key, name, rule_id, title, measure in (
            ("busy_pct", "cpu_busy_pct", "cpu_busy", "CPUs %.0f %% busy", "cpu_pct"),
            ("iowait_pct", "cpu_iowait_pct", "cpu_iowait", "CPUs %.0f %% in iowait",
             "io_bytes_per_s"),
            ("steal_pct", "cpu_steal_pct", "cpu_steal", "%.0f %% of CPU time stolen by the hypervisor",
             None)):
        value = _num(_get(total, key))
        if _over(value, name):
            yield _finding(
                rule_id, WARN, title % value,
                {key: value, "user_pct": _get(total, "user_pct"),
                 "system_pct": _get(total, "system_pct"), "iowait_pct": _get(total, "iowait_pct"),
                 "steal_pct": _get(total, "steal_pct"),
                 "procs_running": _get(snapshot.cpu, "procs_running"),
                 "procs_blocked": _get(snapshot.cpu, "procs_blocked")},
                _limit(key.replace("_pct", ""), name, unit=" %"),
                culprits=top_culprits(snapshot, rates, measure) if measure else ())


def rule_one_cpu_busy(snapshot, rates):
    cpus = _get(rates, "cpu", "cpus") or {}
    hot = [(busy, name) for name, state in cpus.items()
           if _over(busy := _num(_get(state, "busy_pct")), "one_cpu_busy_pct")]
    if not hot:
        return
    busy, name = max(hot)
    yield _finding(
        "cpu_one_busy", WARN, "%s %.0f %% busy" % (name, busy)
        + ("" if len(hot) == 1 else " (%d CPUs over the limit)" % len(hot)),
        {"busy_pct": busy, "cpus_over": len(hot), "cpus": len(cpus),
         "total_busy_pct": _get(rates, "cpu", "total", "busy_pct")},
        _limit("one CPU busy", "one_cpu_busy_pct", unit=" %"), subject=name,
        culprits=top_culprits(snapshot, rates, "cpu_pct"))


# --- memory ---------------------------------------------------------------

def rule_memory_available(snapshot, rates):
    meminfo = _get(snapshot.memory, "meminfo")
    total, available = _num(_get(meminfo, "MemTotal")), _num(_get(meminfo, "MemAvailable"))
    if not total or available is None:
        return
    pct = 100.0 * available / total
    if pct < THRESHOLDS["mem_available_crit_pct"]:
        severity, name = CRIT, "mem_available_crit_pct"
    elif pct < THRESHOLDS["mem_available_warn_pct"]:
        severity, name = WARN, "mem_available_warn_pct"
    else:
        return
    yield _finding(
        "memory_low", severity, "only %.1f %% of memory available" % pct,
        {"available_pct": pct, "available_bytes": available, "total_bytes": total,
         "swap_free_bytes": _get(meminfo, "SwapFree")},
        _limit("available", name, op="<", unit=" %"),
        culprits=top_culprits(snapshot, rates, "rss_bytes"))


def rule_swapping(snapshot, rates):
    memory = _get(rates, "memory")
    swap_in, swap_out = _num(_get(memory, "swap_in_pages_per_s")), _num(_get(memory, "swap_out_pages_per_s"))
    if swap_in is None or swap_out is None:
        return
    if _over(swap_in + swap_out, "swap_pages_per_s"):
        yield _finding(
            "swapping", WARN, "swapping %.0f pages/s" % (swap_in + swap_out),
            {"swap_in_pages_per_s": swap_in, "swap_out_pages_per_s": swap_out},
            _limit("swap in + out", "swap_pages_per_s", unit=" pages/s"),
            culprits=top_culprits(snapshot, rates, "majflt_per_s"))


def rule_major_faults(snapshot, rates):
    faults = _num(_get(rates, "memory", "major_faults_per_s"))
    if _over(faults, "major_faults_per_s"):
        yield _finding(
            "major_faults", WARN, "%.0f major page faults/s" % faults,
            {"major_faults_per_s": faults,
             "swap_in_pages_per_s": _get(rates, "memory", "swap_in_pages_per_s")},
            _limit("major faults", "major_faults_per_s", unit="/s"),
            culprits=top_culprits(snapshot, rates, "majflt_per_s"))


def rule_oom_kills(snapshot, rates):
    in_interval = _num(_get(rates, "memory", "oom_kills"))
    since_boot = _num(_get(snapshot.memory, "vmstat", "oom_kill"))
    if _over(in_interval, "oom_kills"):
        yield _finding(
            "oom_kill", CRIT, "%d OOM kill(s) in the last %.0f s" % (in_interval, rates["interval_s"]),
            {"oom_kills": in_interval, "oom_kills_since_boot": since_boot},
            _limit("OOM kills in the interval", "oom_kills"))
    elif _over(since_boot, "oom_kills"):
        yield _finding(
            "oom_kill_since_boot", WARN, "%d OOM kill(s) since boot" % since_boot,
            {"oom_kills_since_boot": since_boot},
            _limit("OOM kills since boot", "oom_kills"))


def rule_pressure(snapshot, rates):
    for resource, kind, name in (("cpu", "some", "psi_cpu_some_avg10"),
                                 ("memory", "some", "psi_memory_some_avg10"),
                                 ("io", "some", "psi_io_some_avg10"),
                                 ("memory", "full", "psi_memory_full_avg10")):
        line = _get(snapshot.pressure, resource, kind)
        avg10 = _num(_get(line, "avg10"))
        if _over(avg10, name):
            yield _finding(
                "psi_%s_%s" % (resource, kind), WARN,
                "%s pressure: %s tasks stalled %.0f %% of the last 10 s"
                % (resource, "some" if kind == "some" else "all", avg10),
                {"avg10": avg10, "avg60": _get(line, "avg60"), "avg300": _get(line, "avg300"),
                 "interval_pct": _get(rates, "pressure", resource, kind + "_pct")},
                _limit("%s %s avg10" % (resource, kind), name, unit=" %"), subject=resource)


# --- disks and filesystems ------------------------------------------------

def rule_disk_util(snapshot, rates):
    for name, disk in sorted((_get(rates, "disks") or {}).items(), key=lambda item: str(item[0])):
        util = _num(_get(disk, "util_pct"))
        if _over(util, "disk_util_pct"):
            yield _finding(
                "disk_util", WARN, "%s %.0f %% busy" % (name, util),
                {"util_pct": util, "avg_queue": _get(disk, "avg_queue"),
                 "await_ms": _get(disk, "await_ms"), "reads_per_s": _get(disk, "reads_per_s"),
                 "writes_per_s": _get(disk, "writes_per_s")},
                _limit("util", "disk_util_pct", unit=" %"), subject=name,
                culprits=top_culprits(snapshot, rates, "io_bytes_per_s"))


def rule_disk_await(snapshot, rates):
    for name, disk in sorted((_get(rates, "disks") or {}).items(), key=lambda item: str(item[0])):
        await_ms = _num(_get(disk, "await_ms"))
        reads, writes = _num(_get(disk, "reads_per_s")), _num(_get(disk, "writes_per_s"))
        if reads is None or writes is None or not _at_least(reads + writes, "disk_await_min_iops"):
            continue
        if _over(await_ms, "disk_await_ms"):
            yield _finding(
                "disk_await", WARN, "%s I/O takes %.0f ms" % (name, await_ms),
                {"await_ms": await_ms, "r_await_ms": _get(disk, "r_await_ms"),
                 "w_await_ms": _get(disk, "w_await_ms"), "iops": reads + writes,
                 "util_pct": _get(disk, "util_pct"), "avg_queue": _get(disk, "avg_queue")},
                "%s (at >= %s IOPS)" % (_limit("await", "disk_await_ms", unit=" ms"),
                                        _show(THRESHOLDS["disk_await_min_iops"])),
                subject=name, culprits=top_culprits(snapshot, rates, "io_bytes_per_s"))


def filesystem_usage(fs):
    """(space used %, inodes used %) of a filesystems entry, as df computes
    them (used / (used + available to non-root)); None where unknown."""
    size, free, avail = (_num(_get(fs, k)) for k in ("size_bytes", "free_bytes", "avail_bytes"))
    space = None
    if size is not None and free is not None and avail is not None:
        used = size - free
        if used + avail > 0:
            space = 100.0 * used / (used + avail)
    files, files_free = _num(_get(fs, "files")), _num(_get(fs, "files_free"))
    inodes = 100.0 * (files - files_free) / files if files and files_free is not None else None
    return space, inodes


def rule_filesystems(snapshot, rates):
    for fs in snapshot.filesystems or ():
        if not isinstance(fs, dict):
            continue
        space, inodes = filesystem_usage(fs)
        for value, what, prefix in ((space, "space", "fs_used"), (inodes, "inodes", "fs_inodes")):
            if _at_least(value, prefix + "_crit_pct"):
                severity, name = CRIT, prefix + "_crit_pct"
            elif _over(value, prefix + "_warn_pct"):
                severity, name = WARN, prefix + "_warn_pct"
            else:
                continue
            yield _finding(
                "fs_" + what, severity, "%s %.0f %% of %s used" % (fs.get("mountpoint"), value, what),
                {"used_pct": value, "avail_bytes": fs.get("avail_bytes"),
                 "size_bytes": fs.get("size_bytes"), "files_free": fs.get("files_free")},
                _limit("%s used" % what, name, op=">=" if severity == CRIT else ">", unit=" %"),
                subject=fs.get("mountpoint"))


def rule_readonly(snapshot, rates):
    for fs in snapshot.filesystems or ():
        if not isinstance(fs, dict) or fs.get("fstype") not in READONLY_ALERT_FSTYPES:
            continue
        readonly = fs.get("readonly")
        if readonly is None:
            readonly = str(fs.get("options") or "").split(",")[0] == "ro"
        if readonly:
            yield _finding(
                "fs_readonly", WARN, "%s (%s) is read-only" % (fs.get("mountpoint"), fs.get("fstype")),
                {"readonly": 1}, "read-only %s" % "/".join(sorted(READONLY_ALERT_FSTYPES)),
                subject=fs.get("mountpoint"))


# --- network --------------------------------------------------------------

def rule_links(snapshot, rates):
    for name, link in sorted((_get(rates, "network", "links") or {}).items(), key=lambda item: str(item[0])):
        evidence = {k: _get(link, k) for k in ("rx_errors_per_s", "tx_errors_per_s",
                                                "rx_dropped_per_s", "tx_dropped_per_s",
                                                "rx_packets_per_s", "tx_packets_per_s")}
        errors, dropped = _num(_get(link, "errors_per_s")), _num(_get(link, "dropped_per_s"))
        if _over(errors, "nic_errors_per_s"):
            yield _finding("nic_errors", WARN, "%s %.1f errors/s" % (name, errors), evidence,
                           _limit("rx + tx errors", "nic_errors_per_s", unit="/s"), subject=name)
        if _over(dropped, "nic_dropped_per_s"):
            yield _finding("nic_drops", WARN, "%s %.0f drops/s" % (name, dropped), evidence,
                           _limit("rx + tx drops", "nic_dropped_per_s", unit="/s"), subject=name)


def rule_tcp_retransmits(snapshot, rates):
    tcp = _get(rates, "network", "tcp")
    ratio = _num(_get(tcp, "retransmit_pct"))
    if _over(ratio, "tcp_retransmit_pct") and _at_least(_get(tcp, "out_segs_per_s"),
                                                         "tcp_retransmit_min_out_segs_per_s"):
        yield _finding(
            "tcp_retransmits", WARN, "TCP retransmits %.1f %% of segments sent" % ratio,
            {"retransmit_pct": ratio, "retrans_segs_per_s": _get(tcp, "retrans_segs_per_s"),
             "out_segs_per_s": _get(tcp, "out_segs_per_s")},
            "%s (at >= %s segments/s sent)" % (
                _limit("retransmits", "tcp_retransmit_pct", unit=" %"),
                _show(THRESHOLDS["tcp_retransmit_min_out_segs_per_s"])),
            culprits=[_connection(snapshot, e) for e in _retransmitting(snapshot, rates)])


def rule_tcp_listen(snapshot, rates):
    tcp = _get(rates, "network", "tcp")
    overflows, drops = _get(tcp, "listen_overflows_per_s"), _get(tcp, "listen_drops_per_s")
    fired = []
    if _over(overflows, "tcp_listen_overflows_per_s"):
        fired.append(_limit("listen overflows", "tcp_listen_overflows_per_s", unit="/s"))
    if _over(drops, "tcp_listen_drops_per_s"):
        fired.append(_limit("listen drops", "tcp_listen_drops_per_s", unit="/s"))
    if fired:
        yield _finding(
            "tcp_listen_overflow", WARN,
            "listen queues overflowing: %s overflows/s, %s drops/s" % (_show(overflows), _show(drops)),
            {"listen_overflows_per_s": overflows, "listen_drops_per_s": drops,
             "passive_opens_per_s": _get(tcp, "passive_opens_per_s")},
            " or ".join(fired),
            culprits=[_listener(snapshot, listener) for listener in _full_listeners(snapshot)])


def rule_tcp_conn_retrans(snapshot, rates):
    over = [e for e in _retransmitting(snapshot, rates)
            if _over(e.get("retrans_per_s"), "tcp_conn_retrans_per_s")]
    if not over:
        return
    # Every connection over the limit is counted; the top ones are named.
    count = sum(1 for r in rates["sockets"].values()
                if isinstance(r, dict) and _over(r.get("retrans_per_s"), "tcp_conn_retrans_per_s"))
    worst = _connection(snapshot, over[0])
    yield _finding(
        "tcp_conn_retrans", WARN, "%d connection(s) retransmitting" % max(count, len(over)),
        {"retrans_per_s": over[0].get("retrans_per_s"), "total_retrans": over[0].get("total_retrans"),
         "rtt_ms": worst["rtt_ms"], "connections_over": max(count, len(over))},
        _limit("one connection's retransmits", "tcp_conn_retrans_per_s", unit=" segments/s"),
        subject="%s -> %s" % (worst["local"], worst["remote"]),
        culprits=[_connection(snapshot, e) for e in over])


def rule_tcp_listener_full(snapshot, rates):
    sockets = _sockets(snapshot)
    full = listeners_overflowing(sockets) if sockets is not None else []
    if not full:
        return
    culprits = [_listener(snapshot, listener) for listener in full[:MAX_FULL_LISTENERS]]
    yield _finding(
        "tcp_listener_full", WARN, "accept queue full on %d listener(s)" % len(full),
        {"listeners_full": len(full), "backlog": full[0].get("backlog"),
         "backlog_max": full[0].get("backlog_max")},
        "accept queue in use >= listen backlog", subject=culprits[0]["local"], culprits=culprits)


def rule_tcp_resets(snapshot, rates):
    tcp = _get(rates, "network", "tcp")
    fired = [_limit(label, name, unit="/s") for key, label, name in (
        ("estab_resets_per_s", "established resets", "tcp_estab_resets_per_s"),
        ("attempt_fails_per_s", "failed attempts", "tcp_attempt_fails_per_s"))
        if _over(_get(tcp, key), name)]
    if fired:
        yield _finding(
            "tcp_resets", WARN, "TCP connections reset or failing",
            {k: _get(tcp, k) for k in ("estab_resets_per_s", "attempt_fails_per_s",
                                       "out_rsts_per_s", "active_opens_per_s")},
            " or ".join(fired))


def rule_udp_errors(snapshot, rates):
    udp = _get(rates, "network", "udp")
    errors = _num(_get(udp, "in_errors_per_s"))
    if _over(errors, "udp_in_errors_per_s"):
        yield _finding(
            "udp_errors", WARN, "%.1f UDP datagrams/s not delivered" % errors,
            {k: _get(udp, k) for k in ("in_errors_per_s", "rcvbuf_errors_per_s",
                                       "in_datagrams_per_s")},
            _limit("UDP InErrors", "udp_in_errors_per_s", unit="/s"))


def rule_softnet(snapshot, rates):
    total = _get(rates, "network", "softnet", "total")
    dropped, squeezed = _get(total, "dropped_per_s"), _get(total, "time_squeeze_per_s")
    fired = []
    if _over(dropped, "softnet_dropped_per_s"):
        fired.append(_limit("softnet dropped", "softnet_dropped_per_s", unit="/s"))
    if _over(squeezed, "softnet_time_squeeze_per_s"):
        fired.append(_limit("time_squeeze", "softnet_time_squeeze_per_s", unit="/s"))
    if fired:
        yield _finding(
            "softnet", WARN, "packet processing falling behind (softnet)",
            {"dropped_per_s": dropped, "time_squeeze_per_s": squeezed,
             "processed_per_s": _get(total, "processed_per_s")},
            " or ".join(fired))


def rule_conntrack(snapshot, rates):
    count = _num(_get(snapshot.network, "conntrack", "count"))
    maximum = _num(_get(snapshot.network, "conntrack", "max"))
    if count is None or not maximum:
        return
    pct = 100.0 * count / maximum
    if _at_least(pct, "conntrack_crit_pct"):
        severity, name, op = CRIT, "conntrack_crit_pct", ">="
    elif _over(pct, "conntrack_warn_pct"):
        severity, name, op = WARN, "conntrack_warn_pct", ">"
    else:
        return
    yield _finding("conntrack_full", severity, "conntrack table %.0f %% full" % pct,
                   {"used_pct": pct, "count": count, "max": maximum},
                   _limit("entries", name, op=op, unit=" % of max"))


# --- processes ------------------------------------------------------------

def rule_procs_d_state(snapshot, rates):
    stuck = [r for r in _records(snapshot) if r.get("state") == "D"]
    if not _over(len(stuck), "procs_d_state"):
        return
    stuck.sort(key=lambda r: (bool(r.get("kernel_thread")), r["pid"]))
    yield _finding(
        "procs_d_state", WARN, "%d process(es) in D state (uninterruptible)" % len(stuck),
        {"d_state": len(stuck), "procs_blocked": _get(snapshot.cpu, "procs_blocked")},
        _limit("processes in D state", "procs_d_state"),
        culprits=[_process(r) for r in stuck[:NAMED_D_STATE]])


def rule_procs_zombies(snapshot, rates):
    records = _records(snapshot)
    zombies = [r for r in records if r.get("state") == "Z"]
    if not _over(len(zombies), "procs_zombie"):
        return
    by_parent = {}
    for zombie in zombies:
        by_parent[zombie.get("ppid")] = by_parent.get(zombie.get("ppid"), 0) + 1
    by_pid = {r["pid"]: r for r in records}
    ranked = sorted(by_parent.items(), key=lambda item: (-item[1], str(item[0])))
    culprits = [_process(by_pid.get(ppid) or {"pid": ppid}, kind="parent", zombies=n)
                for ppid, n in ranked[:CULPRITS]]
    yield _finding(
        "procs_zombie", WARN, "%d zombie processes not reaped" % len(zombies),
        {"zombies": len(zombies), "parents": len(by_parent)},
        _limit("zombies", "procs_zombie"), culprits=culprits)


# --- kernel ---------------------------------------------------------------

def rule_file_handles(snapshot, rates):
    allocated = _num(_get(snapshot.kernel, "file_nr", "allocated"))
    maximum = _num(_get(snapshot.kernel, "file_nr", "max"))
    if allocated is None or not maximum:
        return
    pct = 100.0 * allocated / maximum
    if _over(pct, "file_handles_pct"):
        yield _finding("file_handles", WARN, "%.0f %% of file handles allocated" % pct,
                       {"used_pct": pct, "allocated": allocated, "max": maximum},
                       _limit("allocated", "file_handles_pct", unit=" % of fs.file-max"))


def rule_tainted(snapshot, rates):
    tainted = _num(_get(snapshot.kernel, "tainted"))
    if tainted:
        letters = _get(snapshot.kernel, "taint_flags") or "?"
        yield _finding("kernel_tainted", WARN, "kernel tainted: %s" % letters,
                       {"tainted": tainted}, "tainted != 0")


def rule_kernel_log(snapshot, rates):
    limit = THRESHOLDS["kernel_log_severity"]
    lines = [line for line in _get(snapshot.kernel, "kmsg") or ()
             if isinstance(line, dict) and _num(line.get("severity")) is not None
             and line["severity"] <= limit]
    if not lines:
        return
    worst = min(line["severity"] for line in lines)
    last = lines[-1]
    yield _finding(
        "kernel_log_errors", CRIT if worst < limit else WARN,
        "%d kernel log line(s) at err or worse; last: %s"
        % (len(lines), str(last.get("message") or "")[:80]),
        {"lines": len(lines), "worst_severity": worst, "last_ts_us": last.get("ts_us")},
        "kernel log severity <= %d (err); crit below" % limit)


RULES = (
    rule_oom_kills, rule_memory_available, rule_filesystems, rule_readonly,
    rule_conntrack, rule_kernel_log,
    rule_load, rule_cpu_states, rule_one_cpu_busy, rule_pressure,
    rule_swapping, rule_major_faults,
    rule_disk_util, rule_disk_await,
    rule_procs_d_state, rule_procs_zombies,
    rule_links, rule_tcp_retransmits, rule_tcp_conn_retrans, rule_tcp_listen,
    rule_tcp_listener_full, rule_tcp_resets, rule_udp_errors,
    rule_softnet, rule_file_handles, rule_tainted,
)


def evaluate(snapshot, rates=None, rules=RULES):
    """Every finding of ``rules`` over one snapshot (and the rates ending at
    it, or None), crit first, then in rule order."""
    findings = [finding for rule in rules for finding in rule(snapshot, rates)]
    return sorted(findings, key=lambda f: _SEVERITY_ORDER[f["severity"]])
