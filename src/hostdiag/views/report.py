"""The one-screen text report, after Brendan Gregg's "Linux performance
analysis in 60 seconds": findings first, then load, CPU, pressure, memory,
disks, filesystems, the workloads (the top cgroups by CPU, memory, I/O and
pressure, with their limits and throttling), the process table (counts by
state, D-state and zombie processes by name, top processes by CPU, memory,
I/O and faults, each with its workload), links, TCP,
the socket table (TCP states, top connections, full listeners) and kernel,
each one or a few lines; every list is capped so that a busy host still fits
on about one screen.

:func:`render_text` is a pure function of a snapshot, its rates (or None for a
single snapshot) and its findings. Bytes are shown in binary units
(KiB, MiB, GiB), bits in decimal ones (Kb, Mb, Gb), counts with k and M.
:func:`socket_inodes_shown` says which sockets the report and the findings
name, so that the caller looks up their processes (and only theirs).
"""

import re

from hostdiag.derive.process_rates import process_key, top_processes
from hostdiag.derive.socket_rates import listeners_overflowing
from hostdiag.findings import (
    connection_rankings,
    culprit_text,
    filesystem_usage,
    socket_inodes_named,
)
from hostdiag.findings.workloads import cgroup_rows, cpu_limit_pct, limit_bytes, workload_label, workload_of

MAX_FINDINGS = 12
MAX_FINDING_LINES = 24      # lines of findings in full; the ids of the rest on one more line
MAX_ERRORS_SHOWN = 3
BUSIEST_CPUS = 4
MAX_DISKS = 6
MAX_FILESYSTEMS = 5
FS_FLAG_PCT = 80.0
MAX_LINKS = 6
MAX_KERNEL_LINES = 3
LINE_WIDTH = 110
MAX_NAMED_PROCESSES = 5     # D-state and zombie processes named, each
TOP_PROCESSES = 5           # rows per top-process table
MAX_LISTENERS = 4           # full listeners shown
CMDLINE_WIDTH = 44
MAX_WORKLOADS = 4           # cgroups in the WORKLOADS block
WORKLOAD_WIDTH = 28         # its name column
PROC_WORKLOAD_WIDTH = 16    # the workload column of the process tables (rows up to ~120 characters)

# Virtual block devices that clutter the screen when idle.
_IDLE_HIDDEN_DISK = re.compile(r"(loop|ram|zram)[0-9]+\Z")

_RED, _YELLOW, _BOLD, _RESET = "\x1b[31m", "\x1b[33m", "\x1b[1m", "\x1b[0m"
_SEVERITY_COLOR = {"crit": _RED, "warn": _YELLOW}


def _num(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _get(data, *keys):
    for key in keys:
        if data is None:
            return None
        data = data.get(key) if isinstance(data, dict) else getattr(data, key, None)
    return data


def _scaled(value, step, units, suffix=""):
    value = _num(value)
    if value is None:
        return "-"
    for unit in units[:-1]:
        if abs(value) < step:
            break
        value /= step
    else:
        unit = units[-1]
    if unit == units[0]:
        return "%d%s%s" % (round(value), unit, suffix)
    return "%.1f%s%s" % (value, unit, suffix)


def human_bytes(value, suffix=""):
    """1536 -> '1.5KiB'; None -> '-'."""
    return _scaled(value, 1024.0, ("B", "KiB", "MiB", "GiB", "TiB", "PiB"), suffix)


def human_bits(value, suffix=""):
    """12_300_000 -> '12.3Mb'; None -> '-'."""
    return _scaled(value, 1000.0, ("b", "Kb", "Mb", "Gb", "Tb"), suffix)


def human_count(value, suffix=""):
    """1234 -> '1.2k'; 0.4 -> '0.4'; None -> '-'."""
    value = _num(value)
    if value is None:
        return "-"
    if abs(value) < 10 and not float(value).is_integer():
        return "%.1f%s" % (value, suffix)
    return _scaled(value, 1000.0, ("", "k", "M", "G", "T"), suffix)


def _pct(value):
    value = _num(value)
    return "-" if value is None else "%.1f" % value


def _duration(seconds):
    seconds = _num(seconds)
    if seconds is None:
        return "-"
    days, rest = divmod(int(seconds), 86400)
    hours, minutes = divmod(rest // 60, 60)
    if days:
        return "%dd %dh%02dm" % (days, hours, minutes)
    return "%dh%02dm" % (hours, minutes) if hours else "%dm" % minutes


class _Screen:
    def __init__(self, color):
        self.color = color
        self.lines = []

    def paint(self, text, code):
        return "%s%s%s" % (code, text, _RESET) if self.color and code else text

    def add(self, label, text=""):
        line = ("%-9s%s" % (label, text)).rstrip() if label else "         " + text
        self.lines.append(line)


def render_text(snapshot, rates, findings, color=False):
    """One screen of text about ``snapshot``; ANSI colour only when ``color``."""
    screen = _Screen(color)
    live_rates = rates if rates is not None and rates.get("comparable") else None
    _header(screen, snapshot, rates)
    _findings(screen, findings or ())
    _load(screen, snapshot)
    _cpu(screen, snapshot, live_rates)
    _pressure(screen, snapshot, live_rates)
    _memory(screen, snapshot, live_rates)
    _disks(screen, snapshot, live_rates)
    _filesystems(screen, snapshot)
    _workloads(screen, snapshot, live_rates)
    _processes(screen, snapshot, live_rates)
    _links(screen, snapshot, live_rates)
    _tcp(screen, snapshot, live_rates)
    _sockets(screen, snapshot, live_rates)
    _kernel(screen, snapshot)
    return "\n".join(screen.lines) + "\n"


def _header(screen, snapshot, rates):
    meta = snapshot.meta
    if rates is None:
        interval = "no rates: one snapshot"
    elif not rates.get("comparable"):
        interval = "no rates: %s" % (rates.get("reason") or "snapshots not comparable")
    else:
        interval = "interval %.2f s" % rates["interval_s"]
    errors = list(meta.errors or ())
    screen.lines.append(screen.paint(
        "hostdiag  %s  kernel %s  up %s  %s  parser %s  errors %d" % (
            meta.hostname or "?", meta.kernel or "?", _duration(_get(snapshot.cpu, "uptime", "uptime_s")),
            interval, meta.parser_impl, len(errors)), _BOLD))
    if errors:
        shown = "; ".join(
            "%s: %s %s" % (_get(e, "source"), _get(e, "kind"), _host_path(meta, _get(e, "path")))
            for e in errors[:MAX_ERRORS_SHOWN])
        more = len(errors) - MAX_ERRORS_SHOWN
        screen.add("errors", shown + (" (+%d more)" % more if more > 0 else ""))


def _host_path(meta, path):
    """A path under --proc-root or --sys-root as the host spells it (/proc/...)."""
    path = str(path)
    for root, name in ((meta.proc_root, "/proc"), (meta.sys_root, "/sys")):
        if root and root not in ("/proc", "/sys") and (path == root or path.startswith(root + "/")):
            return name + path[len(root):]
    return path


def _evidence_value(key, value):
    if key.endswith("_bytes"):
        return human_bytes(value)
    if key.endswith("_pct"):
        return _pct(value) + "%"
    if isinstance(value, float):
        return human_count(round(value, 1))
    return human_count(value)


def _finding_lines(screen, finding):
    """The lines of one finding: severity and title (with its rule when it
    fits), the evidence, then the culprits beyond the first."""
    lines = []
    severity = finding.get("severity", "")
    label = screen.paint("%-4s" % severity.upper(), _SEVERITY_COLOR.get(severity))
    rule = "[%s: %s]" % (finding.get("id"), finding.get("threshold"))
    title = str(finding.get("title"))
    line = ""
    if 8 + len(title) + 2 + len(rule) <= LINE_WIDTH + 20:
        lines.append("  %s  %s  %s" % (label, title, rule))
    else:
        # A long title (one naming a connection) keeps its rule for the next line.
        lines.append("  %s  %s" % (label, title))
        line = rule
    for key, value in (finding.get("evidence") or {}).items():
        item = "%s %s" % (key, _evidence_value(key, value))
        if line and len(line) + 2 + len(item) > LINE_WIDTH:
            lines.append("        " + line)
            line = ""
        line = "%s  %s" % (line, item) if line else item
    if line:
        lines.append("        " + line)
    culprits = [c for c in finding.get("culprits") or () if isinstance(c, dict)]
    # The title names the first culprit: a line only for more.
    if len(culprits) > 1:
        text = "who: " + "; ".join(culprit_text(c) for c in culprits)
        lines.append("        " + (text if len(text) <= LINE_WIDTH else text[:LINE_WIDTH - 3] + "..."))
    return lines


def _findings(screen, findings):
    if not findings:
        screen.add("FINDINGS", "none")
        return
    screen.add("FINDINGS", "%d" % len(findings))
    used = shown = 0
    for finding in findings[:MAX_FINDINGS]:
        lines = _finding_lines(screen, finding)
        if shown and used + len(lines) > MAX_FINDING_LINES:
            break
        screen.lines.extend(lines)
        used += len(lines)
        shown += 1
    rest = findings[shown:]
    if rest:
        screen.lines.append(_listed("  (+%d more: " % len(rest), [str(f.get("id")) for f in rest],
                                    len(rest)) + ")")


def _load(screen, snapshot):
    cpu = snapshot.cpu
    if cpu is None:
        screen.add("LOAD", "-")
        return
    load = cpu.loadavg if isinstance(cpu.loadavg, dict) else {}
    averages = ["-" if _num(load.get(k)) is None else "%.2f" % load[k] for k in ("load1", "load5", "load15")]
    screen.add("LOAD", "1m %s  5m %s  15m %s  on %d CPUs   running %s  blocked %s  threads %s" % (
        averages[0], averages[1], averages[2], len(cpu.cpus or ()),
        human_count(cpu.procs_running), human_count(cpu.procs_blocked), human_count(load.get("threads"))))


_CPU_COLUMNS = (("usr", "user_pct"), ("nice", "nice_pct"), ("sys", "system_pct"),
                ("iowait", "iowait_pct"), ("irq", "irq_pct"), ("soft", "softirq_pct"),
                ("steal", "steal_pct"), ("guest", "guest_pct"), ("idle", "idle_pct"))


# Per-CPU rows leave out the states that are rarely uneven between CPUs.
_ONE_CPU_COLUMNS = tuple(c for c in _CPU_COLUMNS if c[0] not in ("nice", "guest"))


def _cpu_states(states, columns=_CPU_COLUMNS):
    return "  ".join("%s %s" % (label, _pct(_get(states, key))) for label, key in columns)


def _cpu(screen, snapshot, rates):
    cpu = _get(rates, "cpu")
    if cpu is None:
        return
    total = cpu.get("total")
    screen.add("CPU %", "busy %s  %s" % (_pct(_get(total, "busy_pct")), _cpu_states(total)))
    cpus = cpu.get("cpus") or {}
    busiest = sorted(cpus, key=lambda name: (-(_num(_get(cpus[name], "busy_pct")) or 0.0), str(name)))
    for name in busiest[:BUSIEST_CPUS]:
        screen.add("", "%-6s busy %s  %s" % (name, _pct(_get(cpus[name], "busy_pct")),
                                             _cpu_states(cpus[name], _ONE_CPU_COLUMNS)))
    screen.add("", "ctxsw %s/s  intr %s/s  softirq %s/s  forks %s/s" % (
        human_count(cpu.get("ctxt_per_s")), human_count(cpu.get("intr_per_s")),
        human_count(cpu.get("softirq_per_s")), human_count(cpu.get("forks_per_s"))))


def _pressure(screen, snapshot, rates):
    psi = snapshot.pressure
    if psi is None:
        screen.add("PRESSURE", "- (no PSI)")
        return
    parts = []
    for kind in ("some", "full"):
        values = ["%s %s" % (resource, _pct(_get(psi, resource, kind, "avg10")))
                  for resource in ("cpu", "memory", "io", "irq")
                  if _get(psi, resource, kind) is not None]
        if values:
            parts.append("%s %s" % (kind, " ".join(values)))
    text = "avg10 %%: %s" % "  |  ".join(parts) if parts else "-"
    if rates is not None and rates.get("pressure"):
        text += "   interval some %%: cpu %s memory %s io %s" % tuple(
            _pct(_get(rates, "pressure", r, "some_pct")) for r in ("cpu", "memory", "io"))
    screen.add("PRESSURE", text)


def _memory(screen, snapshot, rates):
    meminfo = _get(snapshot.memory, "meminfo")
    total, available = _num(_get(meminfo, "MemTotal")), _num(_get(meminfo, "MemAvailable"))
    swap_total, swap_free = _num(_get(meminfo, "SwapTotal")), _num(_get(meminfo, "SwapFree"))
    swap_used = swap_total - swap_free if swap_total is not None and swap_free is not None else None
    avail_pct = " (%s%%)" % _pct(100.0 * available / total) if total and available is not None else ""
    screen.add("MEMORY", "total %s  avail %s%s  cache %s  dirty %s  swap used %s of %s" % (
        human_bytes(total), human_bytes(available), avail_pct, human_bytes(_get(meminfo, "Cached")),
        human_bytes(_get(meminfo, "Dirty")), human_bytes(swap_used), human_bytes(swap_total)))
    memory = _get(rates, "memory")
    since_boot = human_count(_get(snapshot.memory, "vmstat", "oom_kill"))
    if memory is not None:
        screen.add("", "swap in %s/s out %s/s (pages)  major faults %s/s  OOM kills %s (%s since boot)" % (
            human_count(memory.get("swap_in_pages_per_s")), human_count(memory.get("swap_out_pages_per_s")),
            human_count(memory.get("major_faults_per_s")), human_count(memory.get("oom_kills")), since_boot))
    else:
        screen.add("", "OOM kills since boot %s" % since_boot)


def _disk_io(device):
    return sum(_num(device.get(k)) or 0 for k in ("reads_completed", "writes_completed"))


def _disks(screen, snapshot, rates):
    devices = [d for d in snapshot.disks or () if isinstance(d, dict) and not d.get("is_partition")]
    if snapshot.disks is None:
        screen.add("DISK", "-")
        return
    disk_rates = _get(rates, "disks") or {}
    rows = []
    for device in devices:
        name = device.get("name")
        r = disk_rates.get(name) or {}
        iops = sum(_num(r.get(k)) or 0 for k in ("reads_per_s", "writes_per_s"))
        idle = iops == 0 if rates is not None else _disk_io(device) == 0
        if idle and _IDLE_HIDDEN_DISK.match(str(name)):
            continue
        rows.append((_num(r.get("util_pct")) or 0.0, iops, str(name), r, device))
    if not rows:
        screen.add("DISK", "none with I/O")
        return
    rows.sort(key=lambda row: (-row[0], -row[1], row[2]))
    if rates is None:
        screen.add("DISK", "  ".join("%s in flight %s" % (row[2], human_count(row[4].get("ios_in_progress")))
                                     for row in rows[:MAX_DISKS]))
        return
    screen.add("DISK", "%-12s %7s %7s %9s %9s %8s %8s %8s %6s %6s" % (
        "", "r/s", "w/s", "read/s", "write/s", "r_await", "w_await", "await", "util%", "queue"))
    for util, iops, name, r, device in rows[:MAX_DISKS]:
        screen.add("", "%-12s %7s %7s %9s %9s %8s %8s %8s %6s %6s" % (
            name[:12], human_count(r.get("reads_per_s")), human_count(r.get("writes_per_s")),
            human_bytes(r.get("read_bytes_per_s")), human_bytes(r.get("write_bytes_per_s")),
            _pct(r.get("r_await_ms")), _pct(r.get("w_await_ms")), _pct(r.get("await_ms")),
            _pct(r.get("util_pct")), _pct(r.get("avg_queue"))))
    if len(rows) > MAX_DISKS:
        screen.add("", "(+%d more)" % (len(rows) - MAX_DISKS))


def _filesystems(screen, snapshot):
    if snapshot.filesystems is None:
        screen.add("FS", "-")
        return
    rows = []
    for fs in snapshot.filesystems:
        if not isinstance(fs, dict):
            continue
        space, inodes = filesystem_usage(fs)
        rows.append((space if space is not None else -1.0, inodes, fs))
    rows.sort(key=lambda row: -row[0])
    if not rows:
        screen.add("FS", "none")
        return
    screen.add("FS", "top %d of %d by use" % (min(len(rows), MAX_FILESYSTEMS), len(rows)))
    for space, inodes, fs in rows[:MAX_FILESYSTEMS]:
        flag = " !" if space >= FS_FLAG_PCT or (inodes or 0) >= FS_FLAG_PCT else ""
        line = "%-24s %-6s used %5s%%  avail %8s  inodes %5s%%%s%s" % (
            str(fs.get("mountpoint"))[:24], str(fs.get("fstype"))[:6],
            _pct(space if space >= 0 else None), human_bytes(fs.get("avail_bytes")), _pct(inodes),
            "  ro" if fs.get("readonly") else "", flag)
        screen.add("", screen.paint(line, _YELLOW) if flag else line)


def _links(screen, snapshot, rates):
    network = snapshot.network
    if network is None:
        screen.add("NET", "-")
        return
    link_rates = _get(rates, "network", "links") or {}
    rows = []
    for link in network.get("links") or ():
        if not isinstance(link, dict):
            continue
        r = link_rates.get(link.get("name")) or {}
        bits = sum(_num(r.get(k)) or 0 for k in ("rx_bits_per_s", "tx_bits_per_s"))
        if bits == 0 and str(link.get("operstate") or "").lower() != "up":
            continue
        rows.append((bits, str(link.get("name")), r, link))
    if not rows:
        screen.add("NET", "no link up")
        return
    rows.sort(key=lambda row: (-row[0], row[1]))
    if rates is None:
        screen.add("NET", "  ".join("%s %s mtu %s" % (row[1], row[3].get("operstate") or "?",
                                                     row[3].get("mtu") or "?")
                                    for row in rows[:MAX_LINKS]))
        return
    screen.add("NET", "%-12s %9s %9s %8s %8s %7s %7s %7s %7s" % (
        "", "rx", "tx", "rx pk/s", "tx pk/s", "rx err", "tx err", "rx drop", "tx drop"))
    for bits, name, r, link in rows[:MAX_LINKS]:
        screen.add("", "%-12s %9s %9s %8s %8s %7s %7s %7s %7s" % (
            name[:12], human_bits(r.get("rx_bits_per_s"), "/s"), human_bits(r.get("tx_bits_per_s"), "/s"),
            human_count(r.get("rx_packets_per_s")), human_count(r.get("tx_packets_per_s")),
            human_count(r.get("rx_errors_per_s")), human_count(r.get("tx_errors_per_s")),
            human_count(r.get("rx_dropped_per_s")), human_count(r.get("tx_dropped_per_s"))))
    if len(rows) > MAX_LINKS:
        screen.add("", "(+%d more)" % (len(rows) - MAX_LINKS))


def _tcp(screen, snapshot, rates):
    network = snapshot.network
    if network is None:
        return
    sockstat = _get(network, "sockstat", "TCP")
    established = human_count(_get(network, "snmp", "Tcp", "CurrEstab"))
    sockets = "established %s  sockets inuse %s  timewait %s  orphan %s" % (
        established, human_count(_get(sockstat, "inuse")), human_count(_get(sockstat, "tw")),
        human_count(_get(sockstat, "orphan")))
    tcp = _get(rates, "network", "tcp")
    if tcp is None:
        screen.add("TCP", sockets)
    else:
        screen.add("TCP", "opens active %s/s passive %s/s  retrans %s/s (%s%%)  "
                          "listen overflows %s/s drops %s/s" % (
            human_count(tcp.get("active_opens_per_s")), human_count(tcp.get("passive_opens_per_s")),
            human_count(tcp.get("retrans_segs_per_s")), _pct(tcp.get("retransmit_pct")),
            human_count(tcp.get("listen_overflows_per_s")), human_count(tcp.get("listen_drops_per_s"))))
        screen.add("", "resets estab %s/s out %s/s  attempt fails %s/s  in errs %s/s  %s" % (
            human_count(tcp.get("estab_resets_per_s")), human_count(tcp.get("out_rsts_per_s")),
            human_count(tcp.get("attempt_fails_per_s")), human_count(tcp.get("in_errs_per_s")), sockets))
        udp = _get(rates, "network", "udp") or {}
        softnet = _get(rates, "network", "softnet", "total") or {}
        screen.add("UDP", "in errors %s/s  rcvbuf errors %s/s  no ports %s/s     "
                          "SOFTNET dropped %s/s  squeezed %s/s" % (
            human_count(udp.get("in_errors_per_s")), human_count(udp.get("rcvbuf_errors_per_s")),
            human_count(udp.get("no_ports_per_s")), human_count(softnet.get("dropped_per_s")),
            human_count(softnet.get("time_squeeze_per_s"))))
    conntrack = network.get("conntrack")
    if isinstance(conntrack, dict):
        screen.add("CONNTRK", "%s of %s entries" % (human_count(conntrack.get("count")),
                                                      human_count(conntrack.get("max"))))


def _kernel(screen, snapshot):
    kernel = snapshot.kernel
    if kernel is None:
        screen.add("KERNEL", "-")
        return
    allocated = _num(_get(kernel, "file_nr", "allocated"))
    maximum = _num(_get(kernel, "file_nr", "max"))
    handles = "file handles %s of %s" % (human_count(allocated), human_count(maximum))
    if allocated is not None and maximum:
        handles += " (%s%%)" % _pct(100.0 * allocated / maximum)
    tainted = kernel.get("tainted")
    taint = "tainted %s" % (kernel.get("taint_flags") or tainted) if tainted else "not tainted"
    if tainted is None:
        taint = "taint -"
    log = kernel.get("kmsg")
    log_text = "" if log is None else "  log: %d warning-or-worse line(s)" % len(log)
    screen.add("KERNEL", "%s  %s%s" % (handles, taint, log_text))
    for line in (log or ())[-MAX_KERNEL_LINES:]:
        if isinstance(line, dict):
            screen.add("", "[%s] %s" % (line.get("level"), str(line.get("message"))[:LINE_WIDTH - 20]))


# --- the workloads (cgroup table) ---------------------------------------------

# (measure, rows picked by it): the WORKLOADS block shows the union, in this order.
_WORKLOAD_PICKS = (("cpu", 2), ("memory", 2), ("io", 1), ("pressure", 1))


def _workload_rows(snapshot, rates):
    """[(label, row, its rates)] of the cgroups that are workloads: not the
    root, not a slice (the sum of its children), and one path per workload
    (a container's own sub-cgroups are the container)."""
    per = _get(rates, "cgroups")
    per = per if isinstance(per, dict) else {}
    seen = set()
    rows = []
    for row in sorted(cgroup_rows(snapshot), key=lambda r: r["path"]):
        workload = workload_of(snapshot, row["path"])
        identity = (workload.get("kind"), workload.get("name"), workload.get("id"))
        if row["path"] == "/" or workload.get("kind") == "slice" or identity in seen:
            continue
        seen.add(identity)
        rows.append((workload_label(workload, row["path"], WORKLOAD_WIDTH), row, per.get(row["path"]) or {}))
    return rows


def _workload_measure(measure, row, r):
    if measure == "cpu":
        return _num(r.get("cpu_pct"))
    if measure == "memory":
        return _num(_get(row, "memory", "current"))
    if measure == "io":
        read, write = _num(r.get("read_bytes_per_s")), _num(r.get("write_bytes_per_s"))
        return None if read is None and write is None else (read or 0) + (write or 0)
    return max((_num(_get(row, "pressure", res, "some", "avg10")) or 0 for res in ("cpu", "memory", "io")),
               default=None)


def _workload_line(label, row, r):
    limit = cpu_limit_pct(row)
    cpu = "cpu %5s%%" % _pct(r.get("cpu_pct")) if _num(r.get("cpu_pct")) is not None else "cpu     -"
    if limit is not None:
        cpu += " (limit %.0f%%, throttled %s%%)" % (limit, _pct(r.get("throttled_periods_pct")))
    memory_max = limit_bytes(_get(row, "memory", "max"))
    mem = "mem %s%s" % (human_bytes(_get(row, "memory", "current")),
                        " of %s" % human_bytes(memory_max) if memory_max else "")
    io = _workload_measure("io", row, r)
    parts = ["%-*s" % (WORKLOAD_WIDTH, label), "%-40s" % cpu, "%-24s" % mem,
             "io %s" % human_bytes(io, "/s")]
    psi = _workload_measure("pressure", row, r)
    if _get(row, "pressure") is not None:
        parts.append("psi %s%%" % _pct(psi))
    pids, pids_max = _get(row, "pids", "current"), _num(_get(row, "pids", "max"))
    if pids_max is not None:
        parts.append("pids %s of %s" % (human_count(pids), human_count(pids_max)))
    oom = _num(r.get("oom_kills"))
    if oom:
        parts.append("OOM kills %d" % oom)
    return " ".join(parts)


def _workloads(screen, snapshot, rates):
    section = snapshot.cgroups
    if not isinstance(section, dict):
        screen.add("WORKLOADS", " - (no cgroup table)")
        return
    rows = _workload_rows(snapshot, rates)
    chosen = []
    for measure, count in _WORKLOAD_PICKS:
        if measure in ("cpu", "io") and rates is None:
            continue
        ranked = sorted((item for item in rows if (_workload_measure(measure, item[1], item[2]) or 0) > 0),
                        key=lambda item: (-_workload_measure(measure, item[1], item[2]), item[1]["path"]))
        for item in ranked[:count]:
            if item not in chosen and len(chosen) < MAX_WORKLOADS:
                chosen.append(item)
    omitted = _num(section.get("omitted")) or 0
    screen.add("WORKLOADS", " %d cgroups (%s)%s   top by cpu, memory, io, pressure" % (
        len(section.get("cgroups") or ()), section.get("layout") or "?",
        ", %s not read (max_cgroups)" % human_count(omitted) if omitted else ""))
    if not chosen:
        screen.add("", "none busy")
    for label, row, r in chosen:
        line = _workload_line(label, row, r)
        throttled = _num(r.get("throttled_periods_pct"))
        screen.add("", screen.paint(line, _YELLOW) if throttled and throttled > 25 else line)


def _process_workload(snapshot, record):
    """The short workload name of a process record, "-" for the root cgroup
    or an unknown one."""
    path = record.get("cgroup")
    if not isinstance(path, str) or path == "/":
        return "-"
    return workload_label(workload_of(snapshot, path), path, PROC_WORKLOAD_WIDTH)


# --- the process table --------------------------------------------------------

# ps STAT letters, in the order the counts are shown; others follow.
_STATE_ORDER = ("R", "S", "D", "Z", "T", "t", "I")


def _proc_name(record):
    return "%s[%s]" % (record.get("comm") or "?", record.get("pid"))


def _command(record, width=CMDLINE_WIDTH):
    """The command line as one short string, the program without its directory
    (the arguments matter more on a narrow line); a kernel thread or a zombie
    as [comm], as ps does."""
    args = record.get("cmdline")
    if record.get("kernel_thread") or not isinstance(args, (list, tuple)) or not args:
        text = "[%s]" % (record.get("comm") or "?")
    else:
        text = " ".join([str(args[0]).rsplit("/", 1)[-1]] + [str(a) for a in args[1:]])
        text = text.replace("\n", " ")
    return text if len(text) <= width else text[:width - 3] + "..."


def _listed(prefix, items, total, separator=", "):
    """``prefix`` and as many of ``items`` as fit on one line, then how many of
    the ``total`` were left out."""
    text = prefix
    shown = 0
    for item in items:
        candidate = text + (separator if shown else "") + item
        if shown and len(candidate) > LINE_WIDTH - 22:
            break
        text = candidate
        shown += 1
    more = total - shown
    return text + (" (+%d more)" % more if more > 0 else "")


# (label, top_processes category, column titles, row fields, formatter)
_TOP_TABLES = (
    ("PROC CPU", "cpu", ("cpu%",), ("cpu_pct",), _pct),
    ("PROC MEM", "rss", ("rss",), ("rss_bytes",), human_bytes),
    ("PROC IO", "io", ("read/s", "write/s"), ("read_bytes_per_s", "write_bytes_per_s"),
     human_bytes),
    ("PROC FLT", "faults", ("minflt/s", "majflt/s"), ("minflt_per_s", "majflt_per_s"),
     human_count),
)


def _processes(screen, snapshot, rates):
    section = snapshot.processes
    if not isinstance(section, dict):
        screen.add("PROCS", "- (no process table)")
        return
    records = [r for r in section.get("processes") or () if isinstance(r, dict)]
    counts = section.get("counts") or {}
    by_state = counts.get("by_state") or {}
    states = [s for s in _STATE_ORDER if s in by_state or s in "RSDZ"]
    states += sorted(s for s in by_state if s not in states)
    screen.add("PROCS", "%s processes  %s threads   %s   vanished %s  denied %s" % (
        human_count(counts.get("total")), human_count(counts.get("threads")),
        "  ".join("%s %s" % (s, human_count(by_state.get(s, 0))) for s in states),
        human_count(section.get("vanished")), human_count(section.get("denied"))))
    stuck = [r for r in records if r.get("state") == "D"]
    if stuck:
        screen.add("", screen.paint(_listed(
            "D state: ", [_proc_name(r) for r in stuck[:MAX_NAMED_PROCESSES]], len(stuck)), _YELLOW))
    zombies = [r for r in records if r.get("state") == "Z"]
    if zombies:
        by_pid = {r.get("pid"): r for r in records}
        zombies.sort(key=lambda r: (r.get("ppid") or 0, r.get("pid") or 0))

        def with_parent(record):
            parent = by_pid.get(record.get("ppid"))
            return "%s of %s" % (_proc_name(record), _proc_name(parent) if parent
                                 else "[%s]" % record.get("ppid"))

        screen.add("", _listed(
            "zombies: ", [with_parent(r) for r in zombies[:MAX_NAMED_PROCESSES]], len(zombies)))
    identified = [r for r in records if isinstance(r.get("pid"), int)
                  and isinstance(r.get("start_time"), int)]
    proc_rates = _get(rates, "processes")
    proc_rates = proc_rates if isinstance(proc_rates, dict) else None
    top = top_processes({"processes": identified}, proc_rates or {}, TOP_PROCESSES)
    by_key = {process_key(r): r for r in identified}
    # With the cgroup table, a workload column before the command.
    workloads = isinstance(snapshot.cgroups, dict)
    for label, category, titles, fields, fmt in _TOP_TABLES:
        if category != "rss" and proc_rates is None:
            continue
        rows = top.get(category) or ()
        if not rows:
            screen.add(label, "none above zero")
            continue
        screen.add(label, "%7s %-10s %-16s %s  %scommand" % (
            "pid", "user", "comm", " ".join("%9s" % t for t in titles),
            "%-*s " % (PROC_WORKLOAD_WIDTH, "workload") if workloads else ""))
        for row in rows:
            record = by_key.get(process_key(row)) or {}
            user = row.get("user") if row.get("user") is not None else record.get("uid")
            screen.add("", "%7s %-10s %-16s %s  %s%s" % (
                row.get("pid"), str(user if user is not None else "?")[:10],
                str(row.get("comm"))[:16], " ".join("%9s" % fmt(row.get(f)) for f in fields),
                "%-*s " % (PROC_WORKLOAD_WIDTH, _process_workload(snapshot, record)) if workloads else "",
                _command(record)))


# --- the socket table ---------------------------------------------------------

def _state(name):
    name = str(name)
    return "ESTAB" if name == "ESTABLISHED" else name.replace("_", "-")


def _endpoint(address, port):
    return ("[%s]:%s" if ":" in str(address) else "%s:%s") % (address, port)


def _holders(sockets, inode):
    owners = sockets.get("owners")
    holders = owners.get(str(inode)) if isinstance(owners, dict) and inode else None
    holders = [h for h in holders or () if isinstance(h, dict)]
    if not holders:
        return "-"
    text = "%s[%s]" % (holders[0].get("comm"), holders[0].get("pid"))
    return text + (" +%d" % (len(holders) - 1) if len(holders) > 1 else "")


def socket_inodes_shown(snapshot, rates):
    """The inodes of the sockets :func:`render_text` and the findings name: the
    top connections of each ranking and the full listeners. The caller maps
    these (and only these) to their processes, as ``sockets["owners"]``."""
    sockets = snapshot.sockets
    if not isinstance(sockets, dict):
        return set()
    top = connection_rankings(snapshot, rates)
    inodes = {entry.get("inode") for entries in top.values() for entry in entries}
    inodes.update(listener.get("inode") for listener in listeners_overflowing(sockets)[:MAX_LISTENERS])
    inodes.update(socket_inodes_named(snapshot, rates))
    inodes.discard(None)
    inodes.discard(0)
    return inodes


def _sockets(screen, snapshot, rates):
    sockets = snapshot.sockets
    if not isinstance(sockets, dict):
        screen.add("SOCKETS", "- (no socket table)")
        return
    states = sockets.get("tcp_states") or {}
    ordered = sorted(states, key=lambda name: (-(_num(states[name]) or 0), str(name)))
    unix = sockets.get("unix") if isinstance(sockets.get("unix"), dict) else {}
    dropped = _num(_get(sockets, "tcp_table", "dropped")) or 0
    screen.add("SOCKETS", "tcp %s: %s   udp %s  unix %s   (%s%s)" % (
        human_count(sockets.get("tcp_total")),
        "  ".join("%s %s" % (_state(name), human_count(states[name])) for name in ordered) or "none",
        human_count(sockets.get("udp_total")), human_count(unix.get("total")),
        sockets.get("source") or "?", ", %s rows not kept" % human_count(dropped) if dropped else ""))
    top = connection_rankings(snapshot, rates)
    if any(top.values()):
        screen.add("CONNS", "%-41s %-10s %6s %5s %7s %6s %8s %8s  process" % (
            "top by: local -> remote", "state", "rtt ms", "cwnd", "retrans",
            "rtx/s", "send-q", "recv-q"))
        for ranking, label in (("retrans", " retrans"), ("rtt", " rtt"), ("queue", " queue")):
            for i, entry in enumerate(top.get(ranking) or ()):
                info = _get(entry, "detail", "tcp_info")
                rtt = _num(entry.get("rtt"))
                screen.add("" if i else label, "%-41s %-10s %6s %5s %7s %6s %8s %8s  %s" % (
                    "%s -> %s" % (_endpoint(entry.get("local"), entry.get("local_port")),
                                  _endpoint(entry.get("remote"), entry.get("remote_port"))),
                    _state(entry.get("state"))[:10], "-" if rtt is None else "%.1f" % (rtt / 1000.0),
                    human_count(_get(info, "cwnd")), human_count(entry.get("total_retrans")),
                    human_count(entry.get("retrans_per_s")), human_bytes(entry.get("wqueue")),
                    human_bytes(entry.get("rqueue")), _holders(sockets, entry.get("inode"))))
    listeners = sockets.get("listeners") or ()
    full = listeners_overflowing(sockets)
    if not full:
        screen.add("LISTEN", "%d listening, none with a full accept queue" % len(listeners))
        return
    shown = ["%s backlog %s/%s %s" % (
        _endpoint(listener.get("local"), listener.get("local_port")), listener.get("backlog"),
        listener.get("backlog_max"), _holders(sockets, listener.get("inode")))
        for listener in full[:MAX_LISTENERS]]
    screen.add("LISTEN", screen.paint(_listed("%d of %d full: " % (len(full), len(listeners)),
                                              shown, len(full), "; "), _YELLOW))
