"""The text report, after Brendan Gregg's "Linux performance analysis in 60
seconds": findings first, then load, CPU, pressure, memory, disks,
filesystems, links, TCP, the socket table (TCP states, connections that
retransmit, full listeners), the kernel, the workloads (the top cgroups by
CPU, memory, I/O and pressure) and last the processes (counts by state,
D-state and zombie processes by name, the top processes).

Two views of one snapshot, both ``width`` columns wide, no line wider:

- the one-screen view (the default) fits SCREEN_LINES (38) lines: a block
  whose figures are quiet folds to one line, and when a busy host still
  needs more lines the least useful ones go first (:class:`ScreenBudget`);
- the full view (``full=True``) prints every block in whole.

Tables shrink their columns to the width, cut paths in the middle and leave
out their least useful columns first (:func:`hostdiag.views.text.fit_table`).
Percentages are whole numbers, written as the findings' titles write them,
so that one figure reads the same in a finding and in its block.

:func:`render_text` is a pure function of a snapshot, its rates (or None for a
single snapshot) and its findings; the system blocks are here, the table
blocks in :mod:`hostdiag.views.report_tables`, the units and the layout in
:mod:`hostdiag.views.text`.
"""

import re

from hostdiag.findings import culprit_text, filesystem_usage
from hostdiag.views.report_tables import processes_block, sockets_block, workloads_block
from hostdiag.views.text import (
    BOLD, DEFAULT_WIDTH, SCREEN_LINES, SEVERITY_COLOR, YELLOW, Column, Screen, cut_end, cut_middle, duration,
    fit_parts, get, human_bits, human_bytes, human_count, listed, num, whole_pct, wrap_parts,
)

MAX_FINDINGS = 12           # findings shown; the ids of the rest on one more line
MAX_FINDING_LINES = 24      # lines of findings in the full view
SCREEN_FINDING_LINES = 14   # ... and at most in the one-screen view
MIN_FINDING_LINES = 4       # ... and at least, however busy the blocks below
MAX_ERRORS_SHOWN = 3
BUSIEST_CPUS = 4
MAX_DISKS = 6
SCREEN_DISKS = 3
MAX_FILESYSTEMS = 5
SCREEN_FILESYSTEMS = 3
FS_FLAG_PCT = 80.0          # a filesystem this full (space or inodes) is flagged and shown
DISK_BUSY_PCT = 20.0        # a disk this busy (util %) unfolds the DISK block
CPU_UNEVEN_PCT = 25.0       # a CPU this much busier than all of them shows the busiest CPUs
MAJOR_FAULTS_PER_S = 100.0  # major faults per second that unfold the memory activity line
MAX_LINKS = 6
SCREEN_LINKS = 3
MAX_KERNEL_LINES = 3

# Virtual block devices that clutter the screen when idle.
_IDLE_HIDDEN_DISK = re.compile(r"(loop|ram|zram)[0-9]+\Z")
_MIB = 1024.0 * 1024.0
# The measures of a culprit (findings.culprit_text) and the least value it
# writes as more than zero: a culprit below it contributes nothing and is
# left out of a `who:` line.
_CULPRIT_SHARES = (("cpu_pct", 0.5), ("io_bytes_per_s", 0.05 * _MIB), ("rss_bytes", 0.5 * _MIB),
                   ("majflt_per_s", 0.5), ("retrans_per_s", 1e-9), ("zombies", 1))


class ScreenBudget:
    """The lines of the one-screen view that may go when the screen is too
    long, each with a rank: the highest rank goes first, the last line of a
    rank before the earlier ones. The blocks mark their spare lines with
    :meth:`spare` right after adding them."""

    def __init__(self, screen):
        self.screen = screen
        self.ranks = {}

    def spare(self, *ranks):
        """Marks the screen's last ``len(ranks)`` lines as spare, each with
        its rank (>= 1), in order."""
        if not self.screen.full:
            end = len(self.screen.lines)
            for i, rank in enumerate(ranks):
                self.ranks[end - len(ranks) + i] = rank

    def kept(self):
        """How many lines stay whatever the budget."""
        return len(self.screen.lines) - len(self.ranks)

    def fit(self, lines):
        """Leaves out spare lines until the screen has at most ``lines``."""
        order = sorted(self.ranks, key=lambda i: (self.ranks[i], i))
        extra = len(self.screen.lines) - lines
        gone = set(order[max(0, len(order) - extra):]) if extra > 0 else set()
        self.screen.lines = [line for i, line in enumerate(self.screen.lines) if i not in gone]


def render_text(snapshot, rates, findings, color=False, width=DEFAULT_WIDTH, full=False, lines=SCREEN_LINES):
    """The report of ``snapshot`` in ``width`` columns: the one-screen view in
    at most ``lines`` lines, or with ``full`` every block in whole. ANSI
    colour only when ``color``."""
    live_rates = rates if rates is not None and rates.get("comparable") else None
    head = Screen(color, width, full)
    _header(head, snapshot, rates)
    body = Screen(color, width, full)
    budget = ScreenBudget(body)
    _load(body, snapshot)
    _cpu(body, budget, live_rates)
    _pressure(body, snapshot, live_rates)
    _memory(body, budget, snapshot, live_rates)
    _disks(body, budget, snapshot, live_rates)
    _filesystems(body, budget, snapshot)
    _links(body, budget, snapshot, live_rates)
    _tcp(body, snapshot, live_rates)
    sockets_block(body, budget, snapshot, live_rates)
    _kernel(body, snapshot)
    workloads_block(body, budget, snapshot, live_rates)
    processes_block(body, budget, snapshot, live_rates)
    if full:
        finding_lines = MAX_FINDING_LINES
    else:
        room = lines - len(head.lines) - 1 - budget.kept()
        finding_lines = max(MIN_FINDING_LINES, min(SCREEN_FINDING_LINES, room))
    _findings(head, findings or (), finding_lines)
    if not full:
        budget.fit(lines - len(head.lines))
    return "\n".join(head.lines + body.lines) + "\n"


def _header(screen, snapshot, rates):
    meta = snapshot.meta
    if rates is None:
        interval = "no rates: one snapshot"
    elif not rates.get("comparable"):
        interval = "no rates: %s" % (rates.get("reason") or "snapshots not comparable")
    else:
        interval = "interval %.2f s" % rates["interval_s"]
    errors = list(meta.errors or ())
    parts = [("hostdiag", 0), (meta.hostname or "?", 0), ("kernel %s" % (meta.kernel or "?"), 4),
             ("up %s" % duration(get(snapshot.cpu, "uptime", "uptime_s")), 3), (interval, 2),
             ("parser %s" % meta.parser_impl, 5), ("errors %d" % len(errors), 1 if errors else 6)]
    if screen.full:
        for line in wrap_parts([text for text, _ in parts], screen.width):
            screen.lines.append(screen.paint(line, BOLD))
    else:
        screen.lines.append(screen.paint(fit_parts(parts, screen.width), BOLD))
    if errors:
        shown = ["%s: %s %s" % (get(e, "source"), get(e, "kind"), _host_path(meta, get(e, "path")))
                 for e in errors[:MAX_ERRORS_SHOWN]]
        screen.add("errors", listed("", shown, len(errors), screen.body, "; "))


def _host_path(meta, path):
    """A path under --proc-root or --sys-root as the host spells it (/proc/...)."""
    path = str(path)
    for root, name in ((meta.proc_root, "/proc"), (meta.sys_root, "/sys")):
        if root and root not in ("/proc", "/sys") and (path == root or path.startswith(root + "/")):
            return name + path[len(root):]
    return path


# --- findings ---------------------------------------------------------------

_FINDING_INDENT = "        "


def _evidence_value(key, value):
    if key.endswith("_bytes"):
        return human_bytes(value)
    if key.endswith("pct"):
        return whole_pct(value) + "%"
    if isinstance(value, float):
        return human_count(round(value, 1))
    return human_count(value)


def _contributes(culprit):
    """False for a culprit whose measure is zero as culprit_text writes it."""
    for key, least in _CULPRIT_SHARES:
        value = num(culprit.get(key))
        if value is not None:
            return value >= least
    return True


def _finding_title(screen, finding):
    """The first line of a finding: its severity, its title and, when it fits,
    its rule and threshold (else its rule alone), painted by severity."""
    severity = str(finding.get("severity", ""))
    title = str(finding.get("title"))
    text = title
    for rule in ("[%s: %s]" % (finding.get("id"), finding.get("threshold")), "[%s]" % finding.get("id")):
        if 8 + len(title) + 2 + len(rule) <= screen.width:
            text = "%s  %s" % (title, rule)
            break
    line = cut_end("  %-4s  %s" % (severity.upper(), text), screen.width)
    return line[:2] + screen.paint(line[2:6], SEVERITY_COLOR.get(severity)) + line[6:]


def _finding_details(screen, finding):
    """The lines under a finding's title: its evidence (all of it in the full
    view, one line in the one-screen view), the culprits that contribute,
    after the first that the title names, and the rules of the symptoms it
    explains (findings.ranking folds them under their cause); the full view
    adds each symptom's title, indented."""
    room = screen.width - len(_FINDING_INDENT)
    items = ["%s %s" % (key, _evidence_value(key, value)) for key, value in (finding.get("evidence") or {}).items()]
    evidence = wrap_parts(items, room)
    lines = evidence if screen.full else evidence[:1]
    culprits = [c for c in finding.get("culprits") or () if isinstance(c, dict) and _contributes(c)]
    if len(culprits) > 1:
        lines.append(listed("who: ", [culprit_text(c) for c in culprits], len(culprits), room, "; "))
    symptoms = [s for s in finding.get("symptoms") or () if isinstance(s, dict)]
    if symptoms:
        lines.append(listed("explains: ", [str(s.get("id")) for s in symptoms], len(symptoms), room))
        if screen.full:
            lines += ["  " + cut_end(s.get("title") or s.get("id"), room - 2) for s in symptoms]
    return [_FINDING_INDENT + line for line in lines]


def _findings(screen, findings, budget):
    """The findings in ``budget`` lines: every title (up to MAX_FINDINGS, the
    ids of the rest on one line), then the details of each finding in turn
    while they fit."""
    if not findings:
        screen.add("FINDINGS", "none")
        return
    screen.add("FINDINGS", "%d" % len(findings))
    shown = findings[:MAX_FINDINGS]
    rest = findings[MAX_FINDINGS:]
    if len(shown) + (1 if rest else 0) > budget:
        cut = max(budget - 1, 1)
        shown, rest = findings[:cut], findings[cut:]
    room = budget - len(shown) - (1 if rest else 0)
    for finding in shown:
        details = _finding_details(screen, finding)
        if len(details) > room:
            details = details[:room] if screen.full else []
        room -= len(details)
        screen.lines.append(_finding_title(screen, finding))
        screen.lines.extend(details)
    if rest:
        screen.lines.append(listed("  (+%d more: " % len(rest), [str(f.get("id")) for f in rest],
                                   len(rest), screen.width - 1) + ")")


# --- the system blocks -------------------------------------------------------

def _load(screen, snapshot):
    cpu = snapshot.cpu
    if cpu is None:
        screen.add("LOAD", "-")
        return
    load = cpu.loadavg if isinstance(cpu.loadavg, dict) else {}
    averages = ["-" if num(load.get(k)) is None else "%.2f" % load[k] for k in ("load1", "load5", "load15")]
    screen.add_parts("LOAD", [
        ("1m %s  5m %s  15m %s" % tuple(averages), 0), ("on %d CPUs" % len(cpu.cpus or ()), 0),
        ("running %s" % human_count(cpu.procs_running), 2), ("blocked %s" % human_count(cpu.procs_blocked), 1),
        ("threads %s" % human_count(load.get("threads")), 3)])


# (label, rates key, rank in the one-screen view)
_CPU_COLUMNS = (("usr", "user_pct", 1), ("nice", "nice_pct", 5), ("sys", "system_pct", 1),
                ("iowait", "iowait_pct", 1), ("irq", "irq_pct", 3), ("soft", "softirq_pct", 3),
                ("steal", "steal_pct", 1), ("guest", "guest_pct", 5), ("idle", "idle_pct", 4))

# Per-CPU lines leave out the states that are rarely uneven between CPUs.
_ONE_CPU_COLUMNS = tuple(c for c in _CPU_COLUMNS if c[0] not in ("nice", "guest"))


def _cpu_parts(states, columns=_CPU_COLUMNS):
    return [("%s %s" % (label, whole_pct(get(states, key))), rank) for label, key, rank in columns]


def _cpu(screen, budget, rates):
    """busy is the CPUs' own work: 100 - idle - iowait - steal (the rates'
    busy_pct), the other states of sar and top beside it."""
    cpu = get(rates, "cpu")
    if cpu is None:
        return
    total = cpu.get("total")
    screen.add_parts("CPU %", [("busy %s" % whole_pct(get(total, "busy_pct")), 0)] + _cpu_parts(total))
    cpus = cpu.get("cpus") or {}
    busiest = sorted(cpus, key=lambda name: (-(num(get(cpus[name], "busy_pct")) or 0.0), str(name)))
    if screen.full:
        for name in busiest[:BUSIEST_CPUS]:
            # One line per CPU, whatever the width: the states it cannot hold go.
            screen.add("", fit_parts([("%-6s busy %s" % (name, whole_pct(get(cpus[name], "busy_pct"))), 0)]
                                     + _cpu_parts(cpus[name], _ONE_CPU_COLUMNS), screen.body))
        screen.add_parts("", [("ctxsw %s/s" % human_count(cpu.get("ctxt_per_s")), 0),
                              ("intr %s/s" % human_count(cpu.get("intr_per_s")), 0),
                              ("softirq %s/s" % human_count(cpu.get("softirq_per_s")), 0),
                              ("forks %s/s" % human_count(cpu.get("forks_per_s")), 0)])
        return
    hottest = num(get(cpus.get(busiest[0]) if busiest else None, "busy_pct"))
    if hottest is not None and hottest - (num(get(total, "busy_pct")) or 0.0) >= CPU_UNEVEN_PCT:
        screen.add("", listed("busiest: ", ["%s %s" % (name, whole_pct(get(cpus[name], "busy_pct")))
                                            for name in busiest[:BUSIEST_CPUS]], len(busiest), screen.body, "  "))
        budget.spare(4)


def _pressure(screen, snapshot, rates):
    psi = snapshot.pressure
    if psi is None:
        screen.add("PRESSURE", "- (no PSI)")
        return
    parts = []
    for kind, rank in (("some", 0), ("full", 2)):
        values = ["%s %s" % (resource, whole_pct(get(psi, resource, kind, "avg10")))
                  for resource in ("cpu", "memory", "io", "irq")
                  if get(psi, resource, kind) is not None]
        if values:
            parts.append(("%s %s" % (kind, " ".join(values)), rank))
    if not parts:
        screen.add("PRESSURE", "-")
        return
    parts[0] = ("avg10 %% %s" % parts[0][0], 0)
    if rates is not None and rates.get("pressure"):
        parts.append(("interval some cpu %s memory %s io %s" % tuple(
            whole_pct(get(rates, "pressure", r, "some_pct")) for r in ("cpu", "memory", "io")), 3))
    screen.add_parts("PRESSURE", parts)


def _memory(screen, budget, snapshot, rates):
    meminfo = get(snapshot.memory, "meminfo")
    total, available = num(get(meminfo, "MemTotal")), num(get(meminfo, "MemAvailable"))
    swap_total, swap_free = num(get(meminfo, "SwapTotal")), num(get(meminfo, "SwapFree"))
    swap_used = swap_total - swap_free if swap_total is not None and swap_free is not None else None
    avail_pct = " (%s%%)" % whole_pct(100.0 * available / total) if total and available is not None else ""
    since_boot = human_count(get(snapshot.memory, "vmstat", "oom_kill"))
    memory = get(rates, "memory")
    swapping = any(num(get(memory, key)) for key in ("swap_in_pages_per_s", "swap_out_pages_per_s", "oom_kills"))
    active = memory is not None and (screen.full or swapping
                                     or (num(get(memory, "major_faults_per_s")) or 0) >= MAJOR_FAULTS_PER_S)
    screen.add_parts("MEMORY", [
        ("total %s" % human_bytes(total), 1), ("avail %s%s" % (human_bytes(available), avail_pct), 0),
        ("cache %s" % human_bytes(get(meminfo, "Cached")), 3), ("dirty %s" % human_bytes(get(meminfo, "Dirty")), 3),
        ("swap used %s of %s" % (human_bytes(swap_used), human_bytes(swap_total)), 2),
        ("" if active else "OOM kills since boot %s" % since_boot, 4)])
    if active:
        screen.add_parts("", [
            ("swap in %s/s out %s/s (pages)" % (human_count(memory.get("swap_in_pages_per_s")),
                                                human_count(memory.get("swap_out_pages_per_s"))), 0),
            ("major faults %s/s" % human_count(memory.get("major_faults_per_s")), 1),
            ("OOM kills %s (%s since boot)" % (human_count(memory.get("oom_kills")), since_boot), 0)])
        budget.spare(3)


def _disk_io(device):
    return sum(num(device.get(k)) or 0 for k in ("reads_completed", "writes_completed"))


_DISK_COLUMNS = (
    Column("", "<", shrink=6, cut=cut_middle), Column("r/s"), Column("w/s"), Column("read/s"),
    Column("write/s"), Column("r_await", rank=6), Column("w_await", rank=5), Column("await", rank=2),
    Column("util%"), Column("queue", rank=4))


def _disks(screen, budget, snapshot, rates):
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
        screen.add_parts("DISK", [("%s in flight %s" % (row[2], human_count(row[4].get("ios_in_progress"))), 1 + i)
                                  for i, row in enumerate(rows[:MAX_DISKS])])
        return
    if not screen.full and rows[0][0] < DISK_BUSY_PCT:
        util, iops, name, r, _ = rows[0]
        screen.add_parts("DISK", [
            ("quiet; busiest %s util %s%%" % (name, whole_pct(r.get("util_pct"))), 0),
            ("%s r/s %s w/s" % (human_count(r.get("reads_per_s")), human_count(r.get("writes_per_s"))), 1),
            ("read %s write %s" % (human_bytes(r.get("read_bytes_per_s"), "/s"),
                                   human_bytes(r.get("write_bytes_per_s"), "/s")), 2),
            ("await %s ms" % human_count(r.get("await_ms")), 3),
            ("(+%d more)" % (len(rows) - 1) if len(rows) > 1 else "", 4)])
        return
    shown = rows[:MAX_DISKS if screen.full else SCREEN_DISKS]
    screen.add_table("DISK", _DISK_COLUMNS, [(
        name, human_count(r.get("reads_per_s")), human_count(r.get("writes_per_s")),
        human_bytes(r.get("read_bytes_per_s")), human_bytes(r.get("write_bytes_per_s")),
        human_count(r.get("r_await_ms")), human_count(r.get("w_await_ms")), human_count(r.get("await_ms")),
        whole_pct(r.get("util_pct")), human_count(r.get("avg_queue"))) for util, iops, name, r, device in shown])
    budget.spare(*[6] * (len(shown) - 1))
    if len(rows) > len(shown):
        screen.add("", "(+%d more)" % (len(rows) - len(shown)))
        budget.spare(6)


def _one_per_filesystem(filesystems):
    """[(entry, [its other mount points])]: one entry per filesystem (the
    same device numbers: a bind mount such as /run/netns is the filesystem
    it shows again), the first mounted first."""
    firsts, others = {}, {}
    for fs in filesystems:
        if not isinstance(fs, dict):
            continue
        major, minor = num(fs.get("major")), num(fs.get("minor"))
        key = (major, minor) if major is not None and minor is not None else ("mount", fs.get("mountpoint"))
        if key in firsts:
            others[key].append(str(fs.get("mountpoint")))
        else:
            firsts[key], others[key] = fs, []
    return [(fs, others[key]) for key, fs in firsts.items()]


# After the mount point's column: its type, use, notes (read-only, the other mount points).
_FS_COLUMNS = [Column("type", "<", rank=3, widest=8), Column("used%"), Column("avail"), Column("inodes%", rank=2),
               Column("", "<", rank=5, shrink=6, cut=cut_middle)]


def _filesystems(screen, budget, snapshot):
    if snapshot.filesystems is None:
        screen.add("FS", "-")
        return
    rows = []
    for fs, also in _one_per_filesystem(snapshot.filesystems):
        space, inodes = filesystem_usage(fs)
        rows.append((space if space is not None else -1.0, inodes, fs, also))
    rows.sort(key=lambda row: -row[0])
    if not rows:
        screen.add("FS", "none")
        return
    flagged = [row for row in rows if row[0] >= FS_FLAG_PCT or (row[1] or 0) >= FS_FLAG_PCT]
    if not screen.full and not flagged:
        space, inodes, fs, _ = rows[0]
        screen.add_parts("FS", [("%d filesystems, none %d%% full" % (len(rows), FS_FLAG_PCT), 0),
                                ("fullest %s" % fs.get("mountpoint"), 1),
                                ("used %s%%" % whole_pct(space if space >= 0 else None), 1),
                                ("avail %s" % human_bytes(fs.get("avail_bytes")), 2)])
        return
    shown = rows[:MAX_FILESYSTEMS] if screen.full else flagged[:SCREEN_FILESYSTEMS]
    columns = [Column("top %d of %d" % (len(shown), len(rows)), "<", shrink=20, cut=cut_middle)] + _FS_COLUMNS
    cells = []
    for space, inodes, fs, also in shown:
        notes = (["ro"] if fs.get("readonly") else []) + (["also " + ", ".join(also)] if also else [])
        cells.append((fs.get("mountpoint"), fs.get("fstype"), whole_pct(space if space >= 0 else None),
                      human_bytes(fs.get("avail_bytes")), whole_pct(inodes), "  ".join(notes)))
    codes = [YELLOW if row in flagged else None for row in shown]
    screen.add_table("FS", columns, cells, codes=codes)
    budget.spare(*[6] * (len(shown) - 1))


_LINK_COLUMNS = (
    Column("", "<", shrink=6, cut=cut_middle), Column("rx"), Column("tx"), Column("rx pk/s", rank=6),
    Column("tx pk/s", rank=6), Column("rx err", rank=3), Column("tx err", rank=3), Column("rx drop", rank=2),
    Column("tx drop", rank=2))


def _links(screen, budget, snapshot, rates):
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
        screen.add_parts("NET", [("%s %s mtu %s" % (row[1], row[3].get("operstate") or "?", row[3].get("mtu") or "?"),
                                  1 + i) for i, row in enumerate(rows[:MAX_LINKS])])
        return
    faults = ("rx_errors_per_s", "tx_errors_per_s", "rx_dropped_per_s", "tx_dropped_per_s")
    faulty = [row for row in rows if any(num(row[2].get(k)) for k in faults)]
    if not screen.full and not faulty:
        _, name, r, _ = rows[0]
        screen.add_parts("NET", [
            ("%s rx %s tx %s" % (name, human_bits(r.get("rx_bits_per_s"), "/s"),
                                 human_bits(r.get("tx_bits_per_s"), "/s")), 0),
            ("no errors or drops", 1), ("(+%d more up)" % (len(rows) - 1) if len(rows) > 1 else "", 2)])
        return
    shown = rows[:MAX_LINKS] if screen.full else (faulty + [row for row in rows if row not in faulty])[:SCREEN_LINKS]
    screen.add_table("NET", _LINK_COLUMNS, [(
        name, human_bits(r.get("rx_bits_per_s"), "/s"), human_bits(r.get("tx_bits_per_s"), "/s"),
        human_count(r.get("rx_packets_per_s")), human_count(r.get("tx_packets_per_s")),
        human_count(r.get("rx_errors_per_s")), human_count(r.get("tx_errors_per_s")),
        human_count(r.get("rx_dropped_per_s")), human_count(r.get("tx_dropped_per_s")))
        for bits, name, r, link in shown])
    budget.spare(*[6] * (len(shown) - 1))
    if len(rows) > len(shown):
        screen.add("", "(+%d more)" % (len(rows) - len(shown)))
        budget.spare(6)


def _tcp(screen, snapshot, rates):
    network = snapshot.network
    if network is None:
        return
    sockstat = get(network, "sockstat", "TCP")
    conntrack = network.get("conntrack") if isinstance(network.get("conntrack"), dict) else None
    established = [("established %s" % human_count(get(network, "snmp", "Tcp", "CurrEstab")), 1),
                   ("sockets inuse %s" % human_count(get(sockstat, "inuse")), 5),
                   ("timewait %s" % human_count(get(sockstat, "tw")), 4),
                   ("orphan %s" % human_count(get(sockstat, "orphan")), 5)]
    tracked = [("conntrack %s of %s" % (human_count(conntrack.get("count")), human_count(conntrack.get("max"))), 4)
               ] if conntrack is not None else []
    tcp = get(rates, "network", "tcp")
    if tcp is None:
        screen.add_parts("TCP", established + ([] if screen.full else tracked))
    else:
        screen.add_parts("TCP", [
            ("retrans %s/s (%s%%)" % (human_count(tcp.get("retrans_segs_per_s")), whole_pct(tcp.get("retransmit_pct"))),
             0),
            ("opens active %s/s passive %s/s" % (human_count(tcp.get("active_opens_per_s")),
                                                 human_count(tcp.get("passive_opens_per_s"))), 3),
            ("listen overflows %s/s drops %s/s" % (human_count(tcp.get("listen_overflows_per_s")),
                                                   human_count(tcp.get("listen_drops_per_s"))), 2),
            ("resets estab %s/s out %s/s" % (human_count(tcp.get("estab_resets_per_s")),
                                             human_count(tcp.get("out_rsts_per_s"))), 3),
            ("attempt fails %s/s" % human_count(tcp.get("attempt_fails_per_s")), 5),
            ("in errs %s/s" % human_count(tcp.get("in_errs_per_s")), 5)] + established
            + ([] if screen.full else tracked))
        udp = get(rates, "network", "udp") or {}
        softnet = get(rates, "network", "softnet", "total") or {}
        udp_parts = [("in errors %s/s" % human_count(udp.get("in_errors_per_s")), 0),
                     ("rcvbuf errors %s/s" % human_count(udp.get("rcvbuf_errors_per_s")), 0),
                     ("no ports %s/s" % human_count(udp.get("no_ports_per_s")), 1),
                     ("SOFTNET dropped %s/s" % human_count(softnet.get("dropped_per_s")), 0),
                     ("squeezed %s/s" % human_count(softnet.get("time_squeeze_per_s")), 1)]
        failing = any(num(udp.get(k)) for k in ("in_errors_per_s", "rcvbuf_errors_per_s")) or any(
            num(softnet.get(k)) for k in ("dropped_per_s", "time_squeeze_per_s"))
        if screen.full or failing:
            screen.add_parts("UDP", udp_parts)
    if screen.full and conntrack is not None:
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
        handles += " (%s%%)" % whole_pct(100.0 * allocated / maximum)
    tainted = kernel.get("tainted")
    taint = "tainted %s" % (kernel.get("taint_flags") or tainted) if tainted else "not tainted"
    if tainted is None:
        taint = "taint -"
    log = kernel.get("kmsg")
    parts = [(handles, 2), (taint, 0)]
    if log is not None:
        parts.append(("log: %d warning-or-worse line(s)" % len(log), 1))
    screen.add_parts("KERNEL", parts)
    if screen.full:
        for line in (log or ())[-MAX_KERNEL_LINES:]:
            if isinstance(line, dict):
                screen.add("", "[%s] %s" % (line.get("level"), line.get("message")))

