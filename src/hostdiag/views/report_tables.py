"""The table blocks of the text report: the workloads (the top cgroups by CPU,
memory, I/O and pressure, with their limits and throttling), the process table
(counts by state, D-state and zombie processes by name, top processes by CPU,
memory, I/O and faults, each with its workload) and the socket table (TCP
states, top connections, full listeners). Each block is a pure function of a
snapshot and its rates that adds lines to a :class:`~hostdiag.views.text.Screen`,
in whole with ``screen.full``, else the one-screen view's lines, marking those
that may go on the report's :class:`~hostdiag.views.report.ScreenBudget`.
:func:`socket_inodes_shown` says which sockets the report and the findings
name, so that the caller looks up their processes (and only theirs).
"""

from hostdiag.derive.process_rates import process_key, top_processes
from hostdiag.derive.socket_rates import listeners_overflowing
from hostdiag.findings import connection_rankings, socket_inodes_named
from hostdiag.findings.workloads import cgroup_rows, cpu_limit_pct, limit_bytes, workload_label, workload_of
from hostdiag.views.text import (
    YELLOW, Column, cut_end, cut_middle, get, human_bytes, human_count, listed, num, whole_pct, without_empty_columns,
)

MAX_NAMED_PROCESSES = 5     # D-state and zombie processes named, each
TOP_PROCESSES = 5           # rows per top-process table
MAX_LISTENERS = 4           # full listeners shown
CMDLINE_WIDTH = 120         # the longest command line shown (columns); the width cuts it shorter
MAX_WORKLOADS = 4           # cgroups in the WORKLOADS block
SCREEN_WORKLOADS = 3        # ... in the one-screen view
WORKLOAD_WIDTH = 64         # the longest workload name kept; the table cuts it to the width
PROC_WORKLOAD_WIDTH = 16    # the workload column of the process tables at its widest
SCREEN_PROCESSES = 5        # rows of the one-screen process table that go after other blocks' spare lines
MIN_SCREEN_PROCESSES = 3    # ... and that stay whatever the findings need
# (top_processes category, rows picked) for the one-screen process table, in this order
# (without rates: the top by memory alone).
_SCREEN_PICKS = (("cpu", 5), ("rss", 2), ("io", 1), ("faults", 1))

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


def _workload_cells(label, row, r):
    """A WORKLOADS row: name, cpu %, its limit and throttled periods %, memory
    and its limit, I/O bytes/s, pressure % (the highest some avg10), pids and
    their limit, OOM kills in the interval."""
    limit = cpu_limit_pct(row)
    memory_max = limit_bytes(get(row, "memory", "max"))
    pids, pids_max = get(row, "pids", "current"), num(get(row, "pids", "max"))
    oom = num(r.get("oom_kills"))
    return (label, whole_pct(r.get("cpu_pct")), "-" if limit is None else "%.0f" % limit,
            "-" if limit is None else whole_pct(r.get("throttled_periods_pct")),
            human_bytes(get(row, "memory", "current")), human_bytes(memory_max) if memory_max else "-",
            human_bytes(_workload_measure("io", row, r), "/s"),
            whole_pct(_workload_measure("pressure", row, r)) if get(row, "pressure") is not None else "-",
            "%s/%s" % (human_count(pids), human_count(pids_max)) if pids_max is not None else human_count(pids),
            "%d" % oom if oom else "")


_WORKLOAD_COLUMNS = (
    Column("workload", "<", shrink=16, cut=cut_middle), Column("cpu%"), Column("limit%", rank=3),
    Column("thr%", rank=2), Column("mem"), Column("mem max", rank=4), Column("io/s"), Column("psi%", rank=5),
    Column("pids", rank=6), Column("oom", rank=1))


def workloads_block(screen, budget, snapshot, rates):
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
    screen.add_parts("WORKLOADS", [
        (" %d cgroups (%s)" % (len(section.get("cgroups") or ()), section.get("layout") or "?"), 0),
        ("%s not read (max_cgroups)" % human_count(omitted) if omitted else "", 1),
        ("top by cpu, memory, io, pressure", 2)])
    if not chosen:
        screen.add("", "none busy")
        return
    shown = chosen if screen.full else chosen[:SCREEN_WORKLOADS]
    codes = [YELLOW if (num(r.get("throttled_periods_pct")) or 0) > 25 else None for _, _, r in shown]
    columns, rows = _WORKLOAD_COLUMNS, [_workload_cells(*item) for item in shown]
    if not screen.full:
        columns, rows = without_empty_columns(columns, rows)
    screen.add_table("", columns, rows, codes=codes)
    budget.spare(*[5] * (len(shown) - 1))


def _process_workload(snapshot, record):
    """The short workload name of a process record, "-" for the root cgroup
    or an unknown one."""
    path = record.get("cgroup")
    if not isinstance(path, str) or path == "/":
        return "-"
    return workload_label(workload_of(snapshot, path), path, WORKLOAD_WIDTH)


# --- the process table --------------------------------------------------------

# ps STAT letters, in the order the counts are shown; others follow.
_STATE_ORDER = ("R", "S", "D", "Z", "T", "t", "I")


def _proc_name(record):
    return "%s[%s]" % (record.get("comm") or "?", record.get("pid"))


def _command(record):
    """The command line as one string, the program without its directory
    (the arguments matter more on a narrow line); a kernel thread or a zombie
    as [comm], as ps does. The table cuts it to the width."""
    args = record.get("cmdline")
    if record.get("kernel_thread") or not isinstance(args, (list, tuple)) or not args:
        text = "[%s]" % (record.get("comm") or "?")
    else:
        text = " ".join([str(args[0]).rsplit("/", 1)[-1]] + [str(a) for a in args[1:]])
        text = text.replace("\n", " ")
    return cut_end(text, CMDLINE_WIDTH)


# (label, top_processes category, column titles, row fields, formatter)
_TOP_TABLES = (
    ("PROC CPU", "cpu", ("cpu%",), ("cpu_pct",), whole_pct),
    ("PROC MEM", "rss", ("rss",), ("rss_bytes",), human_bytes),
    ("PROC IO", "io", ("read/s", "write/s"), ("read_bytes_per_s", "write_bytes_per_s"),
     human_bytes),
    ("PROC FLT", "faults", ("minflt/s", "majflt/s"), ("minflt_per_s", "majflt_per_s"),
     human_count),
)


def _user(row, record):
    user = row.get("user") if row.get("user") is not None else record.get("uid")
    return str(user if user is not None else "?")


def _process_columns(titles, workloads):
    """pid, user, comm, ``titles`` (right aligned), the workload (with the
    cgroup table) and the command: when too wide the comm goes first (the
    command shows the program), the command is cut to 20 columns, the
    workload to 8, then the workload and the user go, in that order."""
    columns = [Column("pid"), Column("user", "<", rank=3, widest=10),
               Column("comm", "<", rank=2, widest=16, redundant=True)]
    columns += [Column(title) for title in titles]
    if workloads:
        columns.append(Column("workload", "<", rank=4, shrink=8, cut=cut_middle, widest=PROC_WORKLOAD_WIDTH))
    return columns + [Column("command", "<", shrink=20)]


def processes_block(screen, budget, snapshot, rates):
    section = snapshot.processes
    if not isinstance(section, dict):
        screen.add("PROCS", "- (no process table)")
        return
    records = [r for r in section.get("processes") or () if isinstance(r, dict)]
    counts = section.get("counts") or {}
    by_state = counts.get("by_state") or {}
    states = [s for s in _STATE_ORDER if s in by_state or s in "RSDZ"]
    states += sorted(s for s in by_state if s not in states)
    screen.add_parts("PROCS", [
        ("%s processes" % human_count(counts.get("total")), 0), ("%s threads" % human_count(counts.get("threads")), 2),
        ("  ".join("%s %s" % (s, human_count(by_state.get(s, 0))) for s in states), 1),
        ("vanished %s  denied %s" % (human_count(section.get("vanished")), human_count(section.get("denied"))), 3)])
    stuck = [r for r in records if r.get("state") == "D"]
    if stuck:
        screen.add("", listed("D state: ", [_proc_name(r) for r in stuck[:MAX_NAMED_PROCESSES]], len(stuck),
                              screen.body), YELLOW)
        budget.spare(3)
    zombies = [r for r in records if r.get("state") == "Z"]
    if zombies:
        by_pid = {r.get("pid"): r for r in records}
        zombies.sort(key=lambda r: (r.get("ppid") or 0, r.get("pid") or 0))

        def with_parent(record):
            parent = by_pid.get(record.get("ppid"))
            return "%s of %s" % (_proc_name(record), _proc_name(parent) if parent
                                 else "[%s]" % record.get("ppid"))

        screen.add("", listed("zombies: ", [with_parent(r) for r in zombies[:MAX_NAMED_PROCESSES]], len(zombies),
                              screen.body))
        budget.spare(4)
    identified = [r for r in records if isinstance(r.get("pid"), int)
                  and isinstance(r.get("start_time"), int)]
    proc_rates = get(rates, "processes")
    proc_rates = proc_rates if isinstance(proc_rates, dict) else None
    top = top_processes({"processes": identified}, proc_rates or {},
                        TOP_PROCESSES if screen.full else SCREEN_PROCESSES + 3)
    by_key = {process_key(r): r for r in identified}
    # With the cgroup table, a workload column before the command.
    workloads = isinstance(snapshot.cgroups, dict)
    if not screen.full:
        _top_process_table(screen, budget, snapshot, top, by_key, proc_rates, workloads)
        return
    for label, category, titles, fields, fmt in _TOP_TABLES:
        if category != "rss" and proc_rates is None:
            continue
        rows = top.get(category) or ()
        if not rows:
            screen.add(label, "none above zero")
            continue
        cells = []
        for row in rows:
            record = by_key.get(process_key(row)) or {}
            cells.append((row.get("pid"), _user(row, record), row.get("comm"))
                         + tuple(fmt(row.get(f)) for f in fields)
                         + ((_process_workload(snapshot, record),) if workloads else ()) + (_command(record),))
        screen.add_table(label, _process_columns(titles, workloads), cells)


def _top_process_table(screen, budget, snapshot, top, by_key, proc_rates, workloads):
    """The one-screen view's process table: the top processes by CPU, then
    the top one by memory, by I/O and by faults not among them, each with
    all four measures, ordered by CPU (without rates: the top by memory)."""
    picked = []
    for category, count in _SCREEN_PICKS if proc_rates is not None else (("rss", len(top.get("rss") or ())),):
        for row in (top.get(category) or ())[:count]:
            key = process_key(row)
            if key not in picked:
                picked.append(key)
    if not picked:
        screen.add("PROC TOP", "none above zero")
        return
    cells = []
    for key in picked:
        record = by_key.get(key) or {}
        r = (proc_rates or {}).get(key) or {}
        read, write = num(r.get("read_bytes_per_s")), num(r.get("write_bytes_per_s"))
        cells.append((num(r.get("cpu_pct")) or 0.0, -(num(record.get("rss_bytes")) or 0), (
            record.get("pid"), _user(record, record), record.get("comm"), whole_pct(r.get("cpu_pct")),
            human_bytes(record.get("rss_bytes")),
            human_bytes(None if read is None and write is None else (read or 0) + (write or 0)),
            human_count(r.get("majflt_per_s")))
            + ((_process_workload(snapshot, record),) if workloads else ()) + (_command(record),)))
    cells.sort(key=lambda c: (-c[0], c[1]))
    columns = _process_columns(("cpu%", "rss", "io/s", "majflt"), workloads)
    columns[6].rank = 5     # major faults per second: left out first
    columns, rows = without_empty_columns(columns, [c[2] for c in cells])
    screen.add_table("PROC TOP", columns, rows)
    budget.spare(*[8 if i >= SCREEN_PROCESSES else 5 for i in range(MIN_SCREEN_PROCESSES, len(rows))])


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


_CONN_COLUMNS = (
    Column("top by: local -> remote", "<", shrink=30, cut=cut_middle), Column("state", "<", rank=4, widest=10),
    Column("rtt ms"), Column("cwnd", rank=5), Column("retrans", rank=3), Column("rtx/s"),
    Column("send-q", rank=2), Column("recv-q", rank=2), Column("process", "<", shrink=8))


def _connection_cells(sockets, entry):
    info = get(entry, "detail", "tcp_info")
    rtt = num(entry.get("rtt"))
    return ("%s -> %s" % (_endpoint(entry.get("local"), entry.get("local_port")),
                          _endpoint(entry.get("remote"), entry.get("remote_port"))),
            _state(entry.get("state")), "-" if rtt is None else "%.1f" % (rtt / 1000.0),
            human_count(get(info, "cwnd")), human_count(entry.get("total_retrans")),
            human_count(entry.get("retrans_per_s")), human_bytes(entry.get("wqueue")),
            human_bytes(entry.get("rqueue")), _holders(sockets, entry.get("inode")))


def sockets_block(screen, budget, snapshot, rates):
    """The TCP states and counts; the connections ranked by retransmits, rtt
    and queued bytes (the one-screen view: those that retransmit now, only);
    the listeners whose accept queue is full."""
    sockets = snapshot.sockets
    if not isinstance(sockets, dict):
        screen.add("SOCKETS", "- (no socket table)")
        return
    states = sockets.get("tcp_states") or {}
    ordered = sorted(states, key=lambda name: (-(num(states[name]) or 0), str(name)))
    unix = sockets.get("unix") if isinstance(sockets.get("unix"), dict) else {}
    dropped = num(get(sockets, "tcp_table", "dropped")) or 0
    listeners = sockets.get("listeners") or ()
    full = listeners_overflowing(sockets)
    screen.add_parts("SOCKETS", [
        ("tcp %s:" % human_count(sockets.get("tcp_total")), 0)] + [
        ("%s %s" % (_state(name), human_count(states[name])), 1 + i) for i, name in enumerate(ordered)] + [
        ("udp %s" % human_count(sockets.get("udp_total")), 3), ("unix %s" % human_count(unix.get("total")), 4),
        ("(%s%s)" % (sockets.get("source") or "?", ", %s rows not kept" % human_count(dropped) if dropped else ""), 6)])
    top = connection_rankings(snapshot, rates)
    rankings = (("retrans", " retrans"), ("rtt", " rtt"), ("queue", " queue"))
    if not screen.full:
        rankings = (("retrans", " retrans"),)
        top = {"retrans": [e for e in top.get("retrans") or () if (num(e.get("retrans_per_s")) or 0) > 0]}
    cells, labels = [], []
    for ranking, label in rankings:
        for i, entry in enumerate(top.get(ranking) or ()):
            cells.append(_connection_cells(sockets, entry))
            labels.append("" if i else label)
    if cells:
        screen.add_table("CONNS", _CONN_COLUMNS, cells, row_labels=labels)
        budget.spare(*[7] * (len(cells) - 1))
    if not full:
        text = "%d listening, none with a full accept queue" % len(listeners)
        if screen.full:
            screen.add("LISTEN", text)
        return
    shown = ["%s backlog %s/%s %s" % (
        _endpoint(listener.get("local"), listener.get("local_port")), listener.get("backlog"),
        listener.get("backlog_max"), _holders(sockets, listener.get("inode")))
        for listener in full[:MAX_LISTENERS]]
    screen.add("LISTEN", listed("%d of %d full: " % (len(full), len(listeners)), shown, len(full), screen.body, "; "),
               YELLOW)
