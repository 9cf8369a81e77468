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
single snapshot) and its findings; the system blocks are here, the table
blocks in :mod:`hostdiag.views.report_tables`, the units in
:mod:`hostdiag.views.text`.
"""

import re

from hostdiag.findings import culprit_text, filesystem_usage
from hostdiag.views.report_tables import processes_block, sockets_block, workloads_block
from hostdiag.views.text import (
    BOLD,
    LINE_WIDTH,
    SEVERITY_COLOR,
    YELLOW,
    Screen,
    duration,
    get,
    human_bits,
    human_bytes,
    human_count,
    listed,
    num,
    pct,
)

MAX_FINDINGS = 12
MAX_FINDING_LINES = 24      # lines of findings in full; the ids of the rest on one more line
MAX_ERRORS_SHOWN = 3
BUSIEST_CPUS = 4
MAX_DISKS = 6
MAX_FILESYSTEMS = 5
FS_FLAG_PCT = 80.0
MAX_LINKS = 6
MAX_KERNEL_LINES = 3

# Virtual block devices that clutter the screen when idle.
_IDLE_HIDDEN_DISK = re.compile(r"(loop|ram|zram)[0-9]+\Z")

def render_text(snapshot, rates, findings, color=False):
    """One screen of text about ``snapshot``; ANSI colour only when ``color``."""
    screen = Screen(color)
    live_rates = rates if rates is not None and rates.get("comparable") else None
    _header(screen, snapshot, rates)
    _findings(screen, findings or ())
    _load(screen, snapshot)
    _cpu(screen, snapshot, live_rates)
    _pressure(screen, snapshot, live_rates)
    _memory(screen, snapshot, live_rates)
    _disks(screen, snapshot, live_rates)
    _filesystems(screen, snapshot)
    workloads_block(screen, snapshot, live_rates)
    processes_block(screen, snapshot, live_rates)
    _links(screen, snapshot, live_rates)
    _tcp(screen, snapshot, live_rates)
    sockets_block(screen, snapshot, live_rates)
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
            meta.hostname or "?", meta.kernel or "?", duration(get(snapshot.cpu, "uptime", "uptime_s")),
            interval, meta.parser_impl, len(errors)), BOLD))
    if errors:
        shown = "; ".join(
            "%s: %s %s" % (get(e, "source"), get(e, "kind"), _host_path(meta, get(e, "path")))
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
    if key.endswith("pct"):
        return pct(value) + "%"
    if isinstance(value, float):
        return human_count(round(value, 1))
    return human_count(value)


def _finding_lines(screen, finding):
    """The lines of one finding: severity and title (with its rule when it
    fits), the evidence, the culprits beyond the first, then the symptoms it explains."""
    lines = []
    severity = finding.get("severity", "")
    label = screen.paint("%-4s" % severity.upper(), SEVERITY_COLOR.get(severity))
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
    # The symptoms folded under this cause (findings.ranking), by rule id.
    symptoms = [str(s.get("id")) for s in finding.get("symptoms") or () if isinstance(s, dict)]
    if symptoms:
        text = "explains: " + ", ".join(symptoms)
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
        screen.lines.append(listed("  (+%d more: " % len(rest), [str(f.get("id")) for f in rest],
                                    len(rest)) + ")")


def _load(screen, snapshot):
    cpu = snapshot.cpu
    if cpu is None:
        screen.add("LOAD", "-")
        return
    load = cpu.loadavg if isinstance(cpu.loadavg, dict) else {}
    averages = ["-" if num(load.get(k)) is None else "%.2f" % load[k] for k in ("load1", "load5", "load15")]
    screen.add("LOAD", "1m %s  5m %s  15m %s  on %d CPUs   running %s  blocked %s  threads %s" % (
        averages[0], averages[1], averages[2], len(cpu.cpus or ()),
        human_count(cpu.procs_running), human_count(cpu.procs_blocked), human_count(load.get("threads"))))


_CPU_COLUMNS = (("usr", "user_pct"), ("nice", "nice_pct"), ("sys", "system_pct"),
                ("iowait", "iowait_pct"), ("irq", "irq_pct"), ("soft", "softirq_pct"),
                ("steal", "steal_pct"), ("guest", "guest_pct"), ("idle", "idle_pct"))


# Per-CPU rows leave out the states that are rarely uneven between CPUs.
_ONE_CPU_COLUMNS = tuple(c for c in _CPU_COLUMNS if c[0] not in ("nice", "guest"))


def _cpu_states(states, columns=_CPU_COLUMNS):
    return "  ".join("%s %s" % (label, pct(get(states, key))) for label, key in columns)


def _cpu(screen, snapshot, rates):
    cpu = get(rates, "cpu")
    if cpu is None:
        return
    total = cpu.get("total")
    screen.add("CPU %", "busy %s  %s" % (pct(get(total, "busy_pct")), _cpu_states(total)))
    cpus = cpu.get("cpus") or {}
    busiest = sorted(cpus, key=lambda name: (-(num(get(cpus[name], "busy_pct")) or 0.0), str(name)))
    for name in busiest[:BUSIEST_CPUS]:
        screen.add("", "%-6s busy %s  %s" % (name, pct(get(cpus[name], "busy_pct")),
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
        values = ["%s %s" % (resource, pct(get(psi, resource, kind, "avg10")))
                  for resource in ("cpu", "memory", "io", "irq")
                  if get(psi, resource, kind) is not None]
        if values:
            parts.append("%s %s" % (kind, " ".join(values)))
    text = "avg10 %%: %s" % "  |  ".join(parts) if parts else "-"
    if rates is not None and rates.get("pressure"):
        text += "   interval some %%: cpu %s memory %s io %s" % tuple(
            pct(get(rates, "pressure", r, "some_pct")) for r in ("cpu", "memory", "io"))
    screen.add("PRESSURE", text)


def _memory(screen, snapshot, rates):
    meminfo = get(snapshot.memory, "meminfo")
    total, available = num(get(meminfo, "MemTotal")), num(get(meminfo, "MemAvailable"))
    swap_total, swap_free = num(get(meminfo, "SwapTotal")), num(get(meminfo, "SwapFree"))
    swap_used = swap_total - swap_free if swap_total is not None and swap_free is not None else None
    avail_pct = " (%s%%)" % pct(100.0 * available / total) if total and available is not None else ""
    screen.add("MEMORY", "total %s  avail %s%s  cache %s  dirty %s  swap used %s of %s" % (
        human_bytes(total), human_bytes(available), avail_pct, human_bytes(get(meminfo, "Cached")),
        human_bytes(get(meminfo, "Dirty")), human_bytes(swap_used), human_bytes(swap_total)))
    memory = get(rates, "memory")
    since_boot = human_count(get(snapshot.memory, "vmstat", "oom_kill"))
    if memory is not None:
        screen.add("", "swap in %s/s out %s/s (pages)  major faults %s/s  OOM kills %s (%s since boot)" % (
            human_count(memory.get("swap_in_pages_per_s")), human_count(memory.get("swap_out_pages_per_s")),
            human_count(memory.get("major_faults_per_s")), human_count(memory.get("oom_kills")), since_boot))
    else:
        screen.add("", "OOM kills since boot %s" % since_boot)


def _disk_io(device):
    return sum(num(device.get(k)) or 0 for k in ("reads_completed", "writes_completed"))


def _disks(screen, snapshot, rates):
    devices = [d for d in snapshot.disks or () if isinstance(d, dict) and not d.get("is_partition")]
    if snapshot.disks is None:
        screen.add("DISK", "-")
        return
    disk_rates = get(rates, "disks") or {}
    rows = []
    for device in devices:
        name = device.get("name")
        r = disk_rates.get(name) or {}
        iops = sum(num(r.get(k)) or 0 for k in ("reads_per_s", "writes_per_s"))
        idle = iops == 0 if rates is not None else _disk_io(device) == 0
        if idle and _IDLE_HIDDEN_DISK.match(str(name)):
            continue
        rows.append((num(r.get("util_pct")) or 0.0, iops, str(name), r, device))
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
            pct(r.get("r_await_ms")), pct(r.get("w_await_ms")), pct(r.get("await_ms")),
            pct(r.get("util_pct")), pct(r.get("avg_queue"))))
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
            pct(space if space >= 0 else None), human_bytes(fs.get("avail_bytes")), pct(inodes),
            "  ro" if fs.get("readonly") else "", flag)
        screen.add("", screen.paint(line, YELLOW) if flag else line)


def _links(screen, snapshot, rates):
    network = snapshot.network
    if network is None:
        screen.add("NET", "-")
        return
    link_rates = get(rates, "network", "links") or {}
    rows = []
    for link in network.get("links") or ():
        if not isinstance(link, dict):
            continue
        r = link_rates.get(link.get("name")) or {}
        bits = sum(num(r.get(k)) or 0 for k in ("rx_bits_per_s", "tx_bits_per_s"))
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
    sockstat = get(network, "sockstat", "TCP")
    established = human_count(get(network, "snmp", "Tcp", "CurrEstab"))
    sockets = "established %s  sockets inuse %s  timewait %s  orphan %s" % (
        established, human_count(get(sockstat, "inuse")), human_count(get(sockstat, "tw")),
        human_count(get(sockstat, "orphan")))
    tcp = get(rates, "network", "tcp")
    if tcp is None:
        screen.add("TCP", sockets)
    else:
        screen.add("TCP", "opens active %s/s passive %s/s  retrans %s/s (%s%%)  "
                          "listen overflows %s/s drops %s/s" % (
            human_count(tcp.get("active_opens_per_s")), human_count(tcp.get("passive_opens_per_s")),
            human_count(tcp.get("retrans_segs_per_s")), pct(tcp.get("retransmit_pct")),
            human_count(tcp.get("listen_overflows_per_s")), human_count(tcp.get("listen_drops_per_s"))))
        screen.add("", "resets estab %s/s out %s/s  attempt fails %s/s  in errs %s/s  %s" % (
            human_count(tcp.get("estab_resets_per_s")), human_count(tcp.get("out_rsts_per_s")),
            human_count(tcp.get("attempt_fails_per_s")), human_count(tcp.get("in_errs_per_s")), sockets))
        udp = get(rates, "network", "udp") or {}
        softnet = get(rates, "network", "softnet", "total") or {}
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
    allocated = num(get(kernel, "file_nr", "allocated"))
    maximum = num(get(kernel, "file_nr", "max"))
    handles = "file handles %s of %s" % (human_count(allocated), human_count(maximum))
    if allocated is not None and maximum:
        handles += " (%s%%)" % pct(100.0 * allocated / maximum)
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

