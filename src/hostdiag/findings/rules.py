"""Findings rules: each names one thing that is wrong on a host, with the numbers.

Each rule is a generator over ``(snapshot, rates, previous)``: ``rates``
from :func:`hostdiag.derive.derive_rates` and ``previous`` the snapshot they
start at, both None for a single snapshot. It yields findings::

    {"id": rule id, "severity": "crit" | "warn", "title": one line,
     "evidence": {name: number}, "threshold": the limit that fired, as text,
     "subject": the disk, link, mount point, CPU or connection concerned, or None,
     "culprits": [the processes or connections behind it, most to blame first],
     "when": "now" | "past", "ago_s": seconds since a past event or None,
     "symptoms": [the findings it explains, folded under it by evaluate],
     "look_next": where to look next (hostdiag.findings.guide)}

Rules over rates stay quiet when ``rates`` is None or a rate is unknown; the
rule over two snapshots (processes stuck in D state) when ``previous`` is
None or of another boot; the gauge rules (load, memory, PSI averages,
filesystems, limits, kernel, zombies, full listeners) run on one snapshot.
A missing section or field never raises: the rule says nothing. Every limit is in
:mod:`hostdiag.findings.thresholds`; the culprits come from
:mod:`hostdiag.findings.culprits`, and the title names the first one.
docs/findings.md says what each rule means and where to look next.
"""

from hostdiag.derive.process_rates import process_key
from hostdiag.derive.socket_rates import listeners_overflowing
from hostdiag.findings.culprits import (
    CULPRITS,
    MAX_FULL_LISTENERS,
    connection_culprit,
    full_listeners,
    listener_culprit,
    process_culprit,
    process_records,
    retransmitting,
    shared_measures,
    socket_section,
    top_culprits,
)
from hostdiag.findings.thresholds import THRESHOLDS, at_least, limit_text, over
from hostdiag.findings.values import get, num, show
from hostdiag.findings.cgroups import (
    rule_cgroup_memory,
    rule_cgroup_oom_kills,
    rule_cgroup_pids,
    rule_cgroup_pressure,
    rule_cgroup_throttling,
)
from hostdiag.findings.events import rule_kernel_events, rule_kernel_log
from hostdiag.findings.finding import CRIT, PAST, WARN, finding
from hostdiag.findings.processes import (
    rule_process_cpu,
    rule_process_fd_limit,
    rule_process_rss_growing,
    rule_process_rss_leak,
    rule_user_nproc_limit,
)
from hostdiag.findings.ranking import rank

# Processes named in a D-state finding.
NAMED_D_STATE = 5

# Filesystems that are mounted read-write in normal operation; read-only means
# the kernel remounted them after an error, or someone did it by hand.
READONLY_ALERT_FSTYPES = frozenset(("ext2", "ext3", "ext4", "xfs", "btrfs"))

# --- CPU and load ---------------------------------------------------------

def rule_load(snapshot, rates, previous=None):
    cpu = snapshot.cpu
    ncpu = len(get(cpu, "cpus") or ())
    load1 = num(get(cpu, "loadavg", "load1"))
    if not ncpu or load1 is None:
        return
    if over(load1 / ncpu, "load1_per_cpu"):
        yield finding(
            "load_high", WARN, "load %.2f on %d CPUs" % (load1, ncpu),
            {"load1": load1, "load5": get(cpu, "loadavg", "load5"),
             "load15": get(cpu, "loadavg", "load15"), "cpus": ncpu,
             "load1_per_cpu": load1 / ncpu, "procs_running": get(cpu, "procs_running"),
             "procs_blocked": get(cpu, "procs_blocked")},
            limit_text("load1 per CPU", "load1_per_cpu"))


def rule_cpu_states(snapshot, rates, previous=None):
    total = get(rates, "cpu", "total")
    for key, name, rule_id, title, measure in (
            ("busy_pct", "cpu_busy_pct", "cpu_busy", "CPUs %.0f %% busy", "cpu_pct"),
            ("iowait_pct", "cpu_iowait_pct", "cpu_iowait", "CPUs %.0f %% in iowait",
             "io_bytes_per_s"),
            ("steal_pct", "cpu_steal_pct", "cpu_steal", "%.0f %% of CPU time stolen by the hypervisor",
             None)):
        value = num(get(total, key))
        if over(value, name):
            yield finding(
                rule_id, WARN, title % value,
                {key: value, "user_pct": get(total, "user_pct"),
                 "system_pct": get(total, "system_pct"), "iowait_pct": get(total, "iowait_pct"),
                 "steal_pct": get(total, "steal_pct"),
                 "procs_running": get(snapshot.cpu, "procs_running"),
                 "procs_blocked": get(snapshot.cpu, "procs_blocked")},
                limit_text(key.replace("_pct", ""), name, unit=" %"),
                culprits=top_culprits(snapshot, rates, measure) if measure else ())


def rule_one_cpu_busy(snapshot, rates, previous=None):
    cpus = get(rates, "cpu", "cpus") or {}
    hot = [(busy, name) for name, state in cpus.items()
           if over(busy := num(get(state, "busy_pct")), "one_cpu_busy_pct")]
    if not hot:
        return
    busy, name = max(hot)
    yield finding(
        "cpu_one_busy", WARN, "%s %.0f %% busy" % (name, busy)
        + ("" if len(hot) == 1 else " (%d CPUs over the limit)" % len(hot)),
        {"busy_pct": busy, "cpus_over": len(hot), "cpus": len(cpus),
         "total_busy_pct": get(rates, "cpu", "total", "busy_pct")},
        limit_text("one CPU busy", "one_cpu_busy_pct", unit=" %"), subject=name,
        culprits=top_culprits(snapshot, rates, "cpu_pct"))


# --- memory ---------------------------------------------------------------

def rule_memory_available(snapshot, rates, previous=None):
    meminfo = get(snapshot.memory, "meminfo")
    total, available = num(get(meminfo, "MemTotal")), num(get(meminfo, "MemAvailable"))
    if not total or available is None:
        return
    pct = 100.0 * available / total
    if pct < THRESHOLDS["mem_available_crit_pct"]:
        severity, name = CRIT, "mem_available_crit_pct"
    elif pct < THRESHOLDS["mem_available_warn_pct"]:
        severity, name = WARN, "mem_available_warn_pct"
    else:
        return
    yield finding(
        "memory_low", severity, "only %.1f %% of memory available" % pct,
        {"available_pct": pct, "available_bytes": available, "total_bytes": total,
         "swap_free_bytes": get(meminfo, "SwapFree")},
        limit_text("available", name, op="<", unit=" %"),
        culprits=top_culprits(snapshot, rates, "rss_bytes"))


def rule_swapping(snapshot, rates, previous=None):
    memory = get(rates, "memory")
    swap_in, swap_out = num(get(memory, "swap_in_pages_per_s")), num(get(memory, "swap_out_pages_per_s"))
    if swap_in is None or swap_out is None:
        return
    if over(swap_in + swap_out, "swap_pages_per_s"):
        yield finding(
            "swapping", WARN, "swapping %.0f pages/s" % (swap_in + swap_out),
            {"swap_in_pages_per_s": swap_in, "swap_out_pages_per_s": swap_out},
            limit_text("swap in + out", "swap_pages_per_s", unit=" pages/s"),
            culprits=top_culprits(snapshot, rates, "majflt_per_s"))


def rule_major_faults(snapshot, rates, previous=None):
    faults = num(get(rates, "memory", "major_faults_per_s"))
    if over(faults, "major_faults_per_s"):
        yield finding(
            "major_faults", WARN, "%.0f major page faults/s" % faults,
            {"major_faults_per_s": faults,
             "swap_in_pages_per_s": get(rates, "memory", "swap_in_pages_per_s")},
            limit_text("major faults", "major_faults_per_s", unit="/s"),
            culprits=top_culprits(snapshot, rates, "majflt_per_s"))


def rule_oom_kills(snapshot, rates, previous=None):
    in_interval = num(get(rates, "memory", "oom_kills"))
    since_boot = num(get(snapshot.memory, "vmstat", "oom_kill"))
    if over(in_interval, "oom_kills"):
        yield finding(
            "oom_kill", CRIT, "%d OOM kill(s) in the last %.0f s" % (in_interval, rates["interval_s"]),
            {"oom_kills": in_interval, "oom_kills_since_boot": since_boot},
            limit_text("OOM kills in the interval", "oom_kills"))
    elif over(since_boot, "oom_kills"):
        yield finding(
            "oom_kill_since_boot", WARN, "%d OOM kill(s) since boot" % since_boot,
            {"oom_kills_since_boot": since_boot},
            limit_text("OOM kills since boot", "oom_kills"), when=PAST)


def rule_pressure(snapshot, rates, previous=None):
    for resource, kind, name in (("cpu", "some", "psi_cpu_some_avg10"),
                                 ("memory", "some", "psi_memory_some_avg10"),
                                 ("io", "some", "psi_io_some_avg10"),
                                 ("memory", "full", "psi_memory_full_avg10")):
        line = get(snapshot.pressure, resource, kind)
        avg10 = num(get(line, "avg10"))
        if over(avg10, name):
            yield finding(
                "psi_%s_%s" % (resource, kind), WARN,
                "%s pressure: %s tasks stalled %.0f %% of the last 10 s"
                % (resource, "some" if kind == "some" else "all", avg10),
                {"avg10": avg10, "avg60": get(line, "avg60"), "avg300": get(line, "avg300"),
                 "interval_pct": get(rates, "pressure", resource, kind + "_pct")},
                limit_text("%s %s avg10" % (resource, kind), name, unit=" %"), subject=resource)


# --- disks and filesystems ------------------------------------------------

def rule_disk_util(snapshot, rates, previous=None):
    for name, disk in sorted((get(rates, "disks") or {}).items(), key=lambda item: str(item[0])):
        util = num(get(disk, "util_pct"))
        if over(util, "disk_util_pct"):
            yield finding(
                "disk_util", WARN, "%s %.0f %% busy" % (name, util),
                {"util_pct": util, "avg_queue": get(disk, "avg_queue"),
                 "await_ms": get(disk, "await_ms"), "reads_per_s": get(disk, "reads_per_s"),
                 "writes_per_s": get(disk, "writes_per_s")},
                limit_text("util", "disk_util_pct", unit=" %"), subject=name,
                culprits=top_culprits(snapshot, rates, "io_bytes_per_s"))


def rule_disk_await(snapshot, rates, previous=None):
    for name, disk in sorted((get(rates, "disks") or {}).items(), key=lambda item: str(item[0])):
        await_ms = num(get(disk, "await_ms"))
        reads, writes = num(get(disk, "reads_per_s")), num(get(disk, "writes_per_s"))
        if reads is None or writes is None or not at_least(reads + writes, "disk_await_min_iops"):
            continue
        if over(await_ms, "disk_await_ms"):
            yield finding(
                "disk_await", WARN, "%s I/O takes %.0f ms" % (name, await_ms),
                {"await_ms": await_ms, "r_await_ms": get(disk, "r_await_ms"),
                 "w_await_ms": get(disk, "w_await_ms"), "iops": reads + writes,
                 "util_pct": get(disk, "util_pct"), "avg_queue": get(disk, "avg_queue")},
                "%s (at >= %s IOPS)" % (limit_text("await", "disk_await_ms", unit=" ms"),
                                        show(THRESHOLDS["disk_await_min_iops"])),
                subject=name, culprits=top_culprits(snapshot, rates, "io_bytes_per_s"))


def filesystem_usage(fs):
    """(space used %, inodes used %) of a filesystems entry, as df computes
    them (used / (used + available to non-root)); None where unknown."""
    size, free, avail = (num(get(fs, k)) for k in ("size_bytes", "free_bytes", "avail_bytes"))
    space = None
    if size is not None and free is not None and avail is not None:
        used = size - free
        if used + avail > 0:
            space = 100.0 * used / (used + avail)
    files, files_free = num(get(fs, "files")), num(get(fs, "files_free"))
    inodes = 100.0 * (files - files_free) / files if files and files_free is not None else None
    return space, inodes


def rule_filesystems(snapshot, rates, previous=None):
    for fs in snapshot.filesystems or ():
        if not isinstance(fs, dict):
            continue
        space, inodes = filesystem_usage(fs)
        for value, what, warn, crit in ((space, "space", "fs_used_warn_pct", "fs_used_crit_pct"),
                                        (inodes, "inodes", "fs_inodes_warn_pct", "fs_inodes_crit_pct")):
            if at_least(value, crit):
                severity, name = CRIT, crit
            elif over(value, warn):
                severity, name = WARN, warn
            else:
                continue
            yield finding(
                "fs_" + what, severity, "%s %.0f %% of %s used" % (fs.get("mountpoint"), value, what),
                {"used_pct": value, "avail_bytes": fs.get("avail_bytes"),
                 "size_bytes": fs.get("size_bytes"), "files_free": fs.get("files_free")},
                limit_text("%s used" % what, name, op=">=" if severity == CRIT else ">", unit=" %"),
                subject=fs.get("mountpoint"))


def rule_readonly(snapshot, rates, previous=None):
    for fs in snapshot.filesystems or ():
        if not isinstance(fs, dict) or fs.get("fstype") not in READONLY_ALERT_FSTYPES:
            continue
        readonly = fs.get("readonly")
        if readonly is None:
            readonly = str(fs.get("options") or "").split(",")[0] == "ro"
        if readonly:
            yield finding(
                "fs_readonly", WARN, "%s (%s) is read-only" % (fs.get("mountpoint"), fs.get("fstype")),
                {"readonly": 1}, "read-only %s" % "/".join(sorted(READONLY_ALERT_FSTYPES)),
                subject=fs.get("mountpoint"))


# --- network --------------------------------------------------------------

def rule_links(snapshot, rates, previous=None):
    for name, link in sorted((get(rates, "network", "links") or {}).items(), key=lambda item: str(item[0])):
        evidence = {k: get(link, k) for k in ("rx_errors_per_s", "tx_errors_per_s",
                                                "rx_dropped_per_s", "tx_dropped_per_s",
                                                "rx_packets_per_s", "tx_packets_per_s")}
        errors, dropped = num(get(link, "errors_per_s")), num(get(link, "dropped_per_s"))
        if over(errors, "nic_errors_per_s"):
            yield finding("nic_errors", WARN, "%s %.1f errors/s" % (name, errors), evidence,
                           limit_text("rx + tx errors", "nic_errors_per_s", unit="/s"), subject=name)
        if over(dropped, "nic_dropped_per_s"):
            yield finding("nic_drops", WARN, "%s %.0f drops/s" % (name, dropped), evidence,
                           limit_text("rx + tx drops", "nic_dropped_per_s", unit="/s"), subject=name)


def rule_tcp_retransmits(snapshot, rates, previous=None):
    tcp = get(rates, "network", "tcp")
    ratio = num(get(tcp, "retransmit_pct"))
    if over(ratio, "tcp_retransmit_pct") and at_least(get(tcp, "out_segs_per_s"),
                                                         "tcp_retransmit_min_out_segs_per_s"):
        yield finding(
            "tcp_retransmits", WARN, "TCP retransmits %.1f %% of segments sent" % ratio,
            {"retransmit_pct": ratio, "retrans_segs_per_s": get(tcp, "retrans_segs_per_s"),
             "out_segs_per_s": get(tcp, "out_segs_per_s")},
            "%s (at >= %s segments/s sent)" % (
                limit_text("retransmits", "tcp_retransmit_pct", unit=" %"),
                show(THRESHOLDS["tcp_retransmit_min_out_segs_per_s"])),
            culprits=[connection_culprit(snapshot, e) for e in retransmitting(snapshot, rates)])


def rule_tcp_listen(snapshot, rates, previous=None):
    tcp = get(rates, "network", "tcp")
    overflows, drops = get(tcp, "listen_overflows_per_s"), get(tcp, "listen_drops_per_s")
    fired = []
    if over(overflows, "tcp_listen_overflows_per_s"):
        fired.append(limit_text("listen overflows", "tcp_listen_overflows_per_s", unit="/s"))
    if over(drops, "tcp_listen_drops_per_s"):
        fired.append(limit_text("listen drops", "tcp_listen_drops_per_s", unit="/s"))
    if fired:
        full = full_listeners(snapshot)
        somaxconn = _sysctl(snapshot, "net.core.somaxconn")
        backlog = full[0].get("backlog_max") if full else None
        yield finding(
            "tcp_listen_overflow", WARN,
            "listen queues overflowing: %s overflows/s, %s drops/s (%snet.core.somaxconn %s)" % (
                show(overflows), show(drops), "" if backlog is None else "backlog %s, " % backlog,
                show(somaxconn)),
            {"listen_overflows_per_s": overflows, "listen_drops_per_s": drops,
             "passive_opens_per_s": get(tcp, "passive_opens_per_s"), "backlog_max": backlog,
             "somaxconn": somaxconn},
            " or ".join(fired),
            culprits=[listener_culprit(snapshot, listener) for listener in full])


def rule_tcp_conn_retrans(snapshot, rates, previous=None):
    fast = [e for e in retransmitting(snapshot, rates)
            if over(e.get("retrans_per_s"), "tcp_conn_retrans_per_s")]
    if not fast:
        return
    # Every connection over the limit is counted; the top ones are named.
    count = sum(1 for r in rates["sockets"].values()
                if isinstance(r, dict) and over(r.get("retrans_per_s"), "tcp_conn_retrans_per_s"))
    worst = connection_culprit(snapshot, fast[0])
    yield finding(
        "tcp_conn_retrans", WARN, "%d connection(s) retransmitting" % max(count, len(fast)),
        {"retrans_per_s": fast[0].get("retrans_per_s"), "total_retrans": fast[0].get("total_retrans"),
         "rtt_ms": worst["rtt_ms"], "connections_over": max(count, len(fast))},
        limit_text("one connection's retransmits", "tcp_conn_retrans_per_s", unit=" segments/s"),
        subject="%s -> %s" % (worst["local"], worst["remote"]),
        culprits=[connection_culprit(snapshot, e) for e in fast])


def rule_tcp_listener_full(snapshot, rates, previous=None):
    sockets = socket_section(snapshot)
    full = listeners_overflowing(sockets) if sockets is not None else []
    if not full:
        return
    culprits = [listener_culprit(snapshot, listener) for listener in full[:MAX_FULL_LISTENERS]]
    somaxconn = _sysctl(snapshot, "net.core.somaxconn")
    yield finding(
        "tcp_listener_full", WARN, "accept queue full on %d listener(s) (net.core.somaxconn %s)"
        % (len(full), show(somaxconn)),
        {"listeners_full": len(full), "backlog": full[0].get("backlog"),
         "backlog_max": full[0].get("backlog_max"), "somaxconn": somaxconn},
        "accept queue in use >= listen backlog (capped at net.core.somaxconn)", subject=culprits[0]["local"],
        culprits=culprits)


def rule_tcp_resets(snapshot, rates, previous=None):
    tcp = get(rates, "network", "tcp")
    fired = [limit_text(label, name, unit="/s") for key, label, name in (
        ("estab_resets_per_s", "established resets", "tcp_estab_resets_per_s"),
        ("attempt_fails_per_s", "failed attempts", "tcp_attempt_fails_per_s"))
        if over(get(tcp, key), name)]
    if fired:
        yield finding(
            "tcp_resets", WARN, "TCP connections reset or failing",
            {k: get(tcp, k) for k in ("estab_resets_per_s", "attempt_fails_per_s",
                                       "out_rsts_per_s", "active_opens_per_s")},
            " or ".join(fired))


def rule_udp_errors(snapshot, rates, previous=None):
    udp = get(rates, "network", "udp")
    errors = num(get(udp, "in_errors_per_s"))
    if over(errors, "udp_in_errors_per_s"):
        yield finding(
            "udp_errors", WARN, "%.1f UDP datagrams/s not delivered" % errors,
            {k: get(udp, k) for k in ("in_errors_per_s", "rcvbuf_errors_per_s",
                                       "in_datagrams_per_s")},
            limit_text("UDP InErrors", "udp_in_errors_per_s", unit="/s"))


def _sysctl(snapshot, name):
    return num(get(getattr(snapshot, "kernel", None), "sysctl", name))


def rule_softnet(snapshot, rates, previous=None):
    softnet = get(rates, "network", "softnet")
    total = get(softnet, "total")
    dropped, squeezed = get(total, "dropped_per_s"), get(total, "time_squeeze_per_s")
    fired = []
    if over(dropped, "softnet_dropped_per_s"):
        fired.append(limit_text("softnet dropped", "softnet_dropped_per_s", unit="/s"))
    if over(squeezed, "softnet_time_squeeze_per_s"):
        fired.append(limit_text("time_squeeze", "softnet_time_squeeze_per_s", unit="/s"))
    if not fired:
        return
    # The CPU whose backlog drops most (else the one squeezed most) is named.
    key = "dropped_per_s" if over(dropped, "softnet_dropped_per_s") else "time_squeeze_per_s"
    per_cpu = [(num(get(row, key)), cpu) for cpu, row in (get(softnet, "cpus") or {}).items()
               if num(get(row, key)) is not None]
    worst, cpu = max(per_cpu, key=lambda item: (item[0], str(item[1]))) if per_cpu else (None, None)
    backlog = _sysctl(snapshot, "net.core.netdev_max_backlog")
    if key == "dropped_per_s":
        title = "softnet backlog full: %s packets/s dropped%s (net.core.netdev_max_backlog %s)" % (
            show(dropped), "" if cpu is None else ", most on cpu%s (%s/s)" % (cpu, show(worst)), show(backlog))
    else:
        title = "packet processing falling behind: %s time squeezes/s%s" % (
            show(squeezed), "" if cpu is None else ", most on cpu%s" % cpu)
    yield finding(
        "softnet", WARN, title,
        {"dropped_per_s": dropped, "time_squeeze_per_s": squeezed,
         "processed_per_s": get(total, "processed_per_s"), "cpu": cpu if isinstance(cpu, int) else None,
         "cpu_" + key: worst, "netdev_max_backlog": backlog},
        " or ".join(fired), subject=None if cpu is None else "cpu%s" % cpu)


def rule_conntrack(snapshot, rates, previous=None):
    count = num(get(snapshot.network, "conntrack", "count"))
    maximum = num(get(snapshot.network, "conntrack", "max"))
    if count is None or not maximum:
        return
    pct = 100.0 * count / maximum
    if at_least(pct, "conntrack_crit_pct"):
        severity, name, op = CRIT, "conntrack_crit_pct", ">="
    elif over(pct, "conntrack_warn_pct"):
        severity, name, op = WARN, "conntrack_warn_pct", ">"
    else:
        return
    yield finding("conntrack_full", severity, "conntrack table %.0f %% full: %s of nf_conntrack_max %s"
                   % (pct, show(count), show(maximum)),
                   {"used_pct": pct, "count": count, "max": maximum},
                   limit_text("entries", name, op=op, unit=" % of max"))


# --- processes ------------------------------------------------------------

def _d_state_keys(snapshot):
    return {process_key(r) for r in process_records(snapshot) if r.get("state") == "D"} - {None}


def rule_procs_d_state(snapshot, rates, previous=None):
    """Processes in D state in both snapshots (same pid and start time): one
    sample also catches the short waits of a healthy host, but a process
    uninterruptible across the whole interval is stuck."""
    if previous is None or get(previous, "meta", "boot_id") != get(snapshot, "meta", "boot_id"):
        return
    before = _d_state_keys(previous)
    now = [r for r in process_records(snapshot) if r.get("state") == "D"]
    stuck = [r for r in now if process_key(r) in before]
    if not over(len(stuck), "procs_d_state"):
        return
    stuck.sort(key=lambda r: (bool(r.get("kernel_thread")), r["pid"]))
    mono_ns = num(get(snapshot, "meta", "mono_ns")), num(get(previous, "meta", "mono_ns"))
    interval_s = None if None in mono_ns else (mono_ns[0] - mono_ns[1]) / 1e9
    yield finding(
        "procs_d_state", WARN, "%d process(es) stuck in D state (uninterruptible) for %s s or more"
        % (len(stuck), show(interval_s)),
        {"d_state_both": len(stuck), "d_state_now": len(now), "interval_s": interval_s,
         "procs_blocked": get(snapshot.cpu, "procs_blocked")},
        limit_text("processes in D state in both snapshots", "procs_d_state"),
        culprits=[process_culprit(r) for r in stuck[:NAMED_D_STATE]])


def rule_procs_zombies(snapshot, rates, previous=None):
    records = process_records(snapshot)
    zombies = [r for r in records if r.get("state") == "Z"]
    if not over(len(zombies), "procs_zombie"):
        return
    by_parent = {}
    for zombie in zombies:
        by_parent[zombie.get("ppid")] = by_parent.get(zombie.get("ppid"), 0) + 1
    by_pid = {r["pid"]: r for r in records}
    ranked = sorted(by_parent.items(), key=lambda item: (-item[1], str(item[0])))
    culprits = [process_culprit(by_pid.get(ppid) or {"pid": ppid}, kind="parent", zombies=n)
                for ppid, n in ranked[:CULPRITS]]
    yield finding(
        "procs_zombie", WARN, "%d zombie processes not reaped" % len(zombies),
        {"zombies": len(zombies), "parents": len(by_parent)},
        limit_text("zombies", "procs_zombie"), culprits=culprits)


# --- kernel ---------------------------------------------------------------

def rule_file_handles(snapshot, rates, previous=None):
    allocated = num(get(snapshot.kernel, "file_nr", "allocated"))
    maximum = num(get(snapshot.kernel, "file_nr", "max"))
    if allocated is None or not maximum:
        return
    pct = 100.0 * allocated / maximum
    if over(pct, "file_handles_pct"):
        yield finding("file_handles", WARN, "%.0f %% of file handles allocated: %s of fs.file-max %s"
                       % (pct, show(allocated), show(maximum)),
                       {"used_pct": pct, "allocated": allocated, "max": maximum},
                       limit_text("allocated", "file_handles_pct", unit=" % of fs.file-max"))


def rule_tainted(snapshot, rates, previous=None):
    tainted = num(get(snapshot.kernel, "tainted"))
    if tainted:
        letters = get(snapshot.kernel, "taint_flags") or "?"
        yield finding("kernel_tainted", WARN, "kernel tainted: %s" % letters,
                       {"tainted": tainted}, "tainted != 0", when=PAST)


# Causes with a culprit first, host-wide symptoms after: within one
# severity, findings keep this order (hostdiag.findings.ranking).
RULES = (
    rule_cgroup_oom_kills, rule_cgroup_pids, rule_cgroup_throttling, rule_cgroup_memory,
    rule_cgroup_pressure,
    rule_oom_kills, rule_kernel_events,
    rule_process_fd_limit, rule_user_nproc_limit,
    rule_memory_available, rule_filesystems, rule_readonly, rule_conntrack,
    rule_procs_d_state, rule_process_cpu, rule_process_rss_growing,
    rule_tcp_listener_full, rule_procs_zombies,
    rule_load, rule_cpu_states, rule_one_cpu_busy, rule_pressure,
    rule_swapping, rule_major_faults,
    rule_disk_util, rule_disk_await,
    rule_links, rule_tcp_conn_retrans, rule_tcp_retransmits, rule_tcp_listen,
    rule_tcp_resets, rule_udp_errors,
    rule_softnet, rule_file_handles, rule_kernel_log, rule_tainted,
)


def evaluate(snapshot, rates=None, previous=None, rules=RULES, history=None):
    """Every finding of ``rules`` over one snapshot, the rates ending at it and
    the snapshot they start at (both None for a single snapshot), ranked by
    cause (:func:`hostdiag.findings.ranking.rank`: symptoms under their
    cause, now before past, crit before warn, then in rule order).
    ``history``: older snapshots of the window before (typed or plain
    dicts, oldest first), for the rules over history (a memory leak)."""
    with shared_measures():
        found = [f for f in rule_process_rss_leak(snapshot, history)] if history else []
        found.extend(f for rule in rules for f in rule(snapshot, rates, previous))
    return rank(found)
