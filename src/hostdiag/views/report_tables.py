"""The table blocks of the text report: the workloads (the top cgroups by CPU,
memory, I/O and pressure, with their limits and throttling), the process table
(counts by state, D-state and zombie processes by name, top processes by CPU,
memory, I/O and faults, each with its workload) and the socket table (TCP
states, top connections, full listeners). Each block is a pure function of a
snapshot and its rates that adds lines to a :class:`~hostdiag.views.text.Screen`.
:func:`socket_inodes_shown` says which sockets the report and the findings
name, so that the caller looks up their processes (and only theirs).
"""

from hostdiag.derive.process_rates import process_key, top_processes
from hostdiag.derive.socket_rates import listeners_overflowing
from hostdiag.findings import connection_rankings, socket_inodes_named
from hostdiag.findings.workloads import cgroup_rows, cpu_limit_pct, limit_bytes, workload_label, workload_of
from hostdiag.views.text import YELLOW, get, human_bytes, human_count, listed, num, pct

MAX_NAMED_PROCESSES = 5     # D-state and zombie processes named, each
TOP_PROCESSES = 5           # rows per top-process table
MAX_LISTENERS = 4           # full listeners shown
CMDLINE_WIDTH = 44
MAX_WORKLOADS = 4           # cgroups in the WORKLOADS block
WORKLOAD_WIDTH = 28         # its name column
PROC_WORKLOAD_WIDTH = 16    # the workload column of the process tables (rows up to ~120 characters)

# --- the workloads (cgroup table) ---------------------------------------------

# (measure, rows picked by it): the WORKLOADS block shows the union, in this order.
_WORKLOAD_PICKS = (("cpu", 2), ("memory", 2), ("io", 1), ("pressure", 1))


def _workload_rows(snapshot, rates):
    """[(label, row, its rates)] of the cgroups that are workloads: not the
    root, not a slice (the sum of its children), and one path per workload
    (a container's own sub-cgroups are the container)."""
    per = get(rates, "cgroups")
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
        return num(r.get("cpu_pct"))
    if measure == "memory":
        return num(get(row, "memory", "current"))
    if measure == "io":
        read, write = num(r.get("read_bytes_per_s")), num(r.get("write_bytes_per_s"))
        return None if read is None and write is None else (read or 0) + (write or 0)
    return max((num(get(row, "pressure", res, "some", "avg10")) or 0 for res in ("cpu", "memory", "io")),
               default=None)


def _workload_line(label, row, r):
    limit = cpu_limit_pct(row)
    cpu = "cpu %5s%%" % pct(r.get("cpu_pct")) if num(r.get("cpu_pct")) is not None else "cpu     -"
    if limit is not None:
        cpu += " (limit %.0f%%, throttled %s%%)" % (limit, pct(r.get("throttled_periods_pct")))
    memory_max = limit_bytes(get(row, "memory", "max"))
    mem = "mem %s%s" % (human_bytes(get(row, "memory", "current")),
                        " of %s" % human_bytes(memory_max) if memory_max else "")
    io = _workload_measure("io", row, r)
    parts = ["%-*s" % (WORKLOAD_WIDTH, label), "%-40s" % cpu, "%-24s" % mem,
             "io %s" % human_bytes(io, "/s")]
    psi = _workload_measure("pressure", row, r)
    if get(row, "pressure") is not None:
        parts.append("psi %s%%" % pct(psi))
    pids, pids_max = get(row, "pids", "current"), num(get(row, "pids", "max"))
    if pids_max is not None:
        parts.append("pids %s of %s" % (human_count(pids), human_count(pids_max)))
    oom = num(r.get("oom_kills"))
    if oom:
        parts.append("OOM kills %d" % oom)
    return " ".join(parts)


def workloads_block(screen, snapshot, rates):
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
    omitted = num(section.get("omitted")) or 0
    screen.add("WORKLOADS", " %d cgroups (%s)%s   top by cpu, memory, io, pressure" % (
        len(section.get("cgroups") or ()), section.get("layout") or "?",
        ", %s not read (max_cgroups)" % human_count(omitted) if omitted else ""))
    if not chosen:
        screen.add("", "none busy")
    for label, row, r in chosen:
        line = _workload_line(label, row, r)
        throttled = num(r.get("throttled_periods_pct"))
        screen.add("", screen.paint(line, YELLOW) if throttled and throttled > 25 else line)


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


# (label, top_processes category, column titles, row fields, formatter)
_TOP_TABLES = (
    ("PROC CPU", "cpu", ("cpu%",), ("cpu_pct",), pct),
    ("PROC MEM", "rss", ("rss",), ("rss_bytes",), human_bytes),
    ("PROC IO", "io", ("read/s", "write/s"), ("read_bytes_per_s", "write_bytes_per_s"),
     human_bytes),
    ("PROC FLT", "faults", ("minflt/s", "majflt/s"), ("minflt_per_s", "majflt_per_s"),
     human_count),
)


def processes_block(screen, snapshot, rates):
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
        screen.add("", screen.paint(listed(
            "D state: ", [_proc_name(r) for r in stuck[:MAX_NAMED_PROCESSES]], len(stuck)), YELLOW))
    zombies = [r for r in records if r.get("state") == "Z"]
    if zombies:
        by_pid = {r.get("pid"): r for r in records}
        zombies.sort(key=lambda r: (r.get("ppid") or 0, r.get("pid") or 0))

        def with_parent(record):
            parent = by_pid.get(record.get("ppid"))
            return "%s of %s" % (_proc_name(record), _proc_name(parent) if parent
                                 else "[%s]" % record.get("ppid"))

        screen.add("", listed(
            "zombies: ", [with_parent(r) for r in zombies[:MAX_NAMED_PROCESSES]], len(zombies)))
    identified = [r for r in records if isinstance(r.get("pid"), int)
                  and isinstance(r.get("start_time"), int)]
    proc_rates = get(rates, "processes")
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


def sockets_block(screen, snapshot, rates):
    sockets = snapshot.sockets
    if not isinstance(sockets, dict):
        screen.add("SOCKETS", "- (no socket table)")
        return
    states = sockets.get("tcp_states") or {}
    ordered = sorted(states, key=lambda name: (-(num(states[name]) or 0), str(name)))
    unix = sockets.get("unix") if isinstance(sockets.get("unix"), dict) else {}
    dropped = num(get(sockets, "tcp_table", "dropped")) or 0
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
                info = get(entry, "detail", "tcp_info")
                rtt = num(entry.get("rtt"))
                screen.add("" if i else label, "%-41s %-10s %6s %5s %7s %6s %8s %8s  %s" % (
                    "%s -> %s" % (_endpoint(entry.get("local"), entry.get("local_port")),
                                  _endpoint(entry.get("remote"), entry.get("remote_port"))),
                    _state(entry.get("state"))[:10], "-" if rtt is None else "%.1f" % (rtt / 1000.0),
                    human_count(get(info, "cwnd")), human_count(entry.get("total_retrans")),
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
    screen.add("LISTEN", screen.paint(listed("%d of %d full: " % (len(full), len(listeners)),
                                              shown, len(full), "; "), YELLOW))
