"""The one-screen text report, after Brendan Gregg's "Linux performance
analysis in 60 seconds": findings first, then load, CPU, pressure, memory,
disks, filesystems, links, TCP, softnet and kernel, each one or a few lines.

:func:`render_text` is a pure function of a snapshot, its rates (or None for a
single snapshot) and its findings. Bytes are shown in binary units
(KiB, MiB, GiB), bits in decimal ones (Kb, Mb, Gb), counts with k and M.
"""

import re

from hostdiag.views.findings import filesystem_usage

MAX_FINDINGS = 12
MAX_ERRORS_SHOWN = 3
BUSIEST_CPUS = 4
MAX_DISKS = 6
MAX_FILESYSTEMS = 5
FS_FLAG_PCT = 80.0
MAX_LINKS = 6
MAX_KERNEL_LINES = 3
LINE_WIDTH = 110

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
    _links(screen, snapshot, live_rates)
    _tcp(screen, snapshot, live_rates)
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


def _findings(screen, findings):
    if not findings:
        screen.add("FINDINGS", "none")
        return
    screen.add("FINDINGS", "%d" % len(findings))
    for finding in findings[:MAX_FINDINGS]:
        severity = finding.get("severity", "")
        label = screen.paint("%-4s" % severity.upper(), _SEVERITY_COLOR.get(severity))
        screen.lines.append("  %s  %s  [%s: %s]" % (
            label, finding.get("title"), finding.get("id"), finding.get("threshold")))
        line = ""
        for key, value in (finding.get("evidence") or {}).items():
            item = "%s %s" % (key, _evidence_value(key, value))
            if line and len(line) + 2 + len(item) > LINE_WIDTH:
                screen.lines.append("        " + line)
                line = ""
            line = "%s  %s" % (line, item) if line else item
        if line:
            screen.lines.append("        " + line)
    if len(findings) > MAX_FINDINGS:
        screen.lines.append("  (+%d more)" % (len(findings) - MAX_FINDINGS))


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
