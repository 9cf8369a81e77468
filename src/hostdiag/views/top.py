"""`diag top`: the live screen.

The screen is a pure function of one frame (a snapshot and the rates and
findings ending at it, all plain data) and the viewer's state (sort, filter,
pause, interval): :func:`render_screen` returns the lines, each cut to the
width. Keys change the state through :func:`handle_key`, also pure. The
curses driver (:func:`run_screen`) only draws those lines, reads keys and
asks for a new frame every interval; where frames come from (this host or
an agent) is the caller's business.

curses comes with Python on every Linux: no dependency to install, it runs
over SSH in any terminal, and the screen is plain text that tmux can capture.
"""

import datetime
import re
import time

from hostdiag.derive.counters import get as _get
from hostdiag.findings.workloads import limit_bytes, workload_label

NS = 1_000_000_000

#: Sort keys: key pressed -> (name shown, the process field sorted on).
SORTS = {"c": ("cpu", "cpu_pct"), "m": ("mem", "rss_bytes"), "i": ("io", "io_bytes_per_s"),
         "f": ("faults", "faults_per_s")}

#: The intervals + and - step through, in seconds.
INTERVALS = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

#: Findings shown at most (the rest are counted on one line).
MAX_FINDINGS = 4

#: Workloads (cgroups) in the WORKLOADS pane, and the width of their names.
MAX_WORKLOADS = 3
WORKLOAD_WIDTH = 28
#: Process rows the WORKLOADS pane always leaves: on a shorter screen it is not shown.
MIN_PROCESS_ROWS = 10

#: Keys curses reports for Enter, Escape and Backspace.
ENTER_KEYS = (10, 13)
ESCAPE_KEY = 27
BACKSPACE_KEYS = (8, 127, 263)


class TopState:
    """What the viewer chose: ``sort`` (a key of :data:`SORTS`), ``filter``
    (a substring of the name, command or user; "" for all), ``typing`` (the
    filter being typed, None when not), ``paused``, ``interval_s``, and
    ``running`` (False once q is pressed)."""

    def __init__(self, interval_s=1.0, sort="c"):
        self.sort = sort
        self.filter = ""
        self.typing = None
        self.paused = False
        self.interval_s = interval_s
        self.running = True


def _step_interval(current, direction):
    if direction > 0:
        return next((i for i in INTERVALS if i > current), INTERVALS[-1])
    return next((i for i in reversed(INTERVALS) if i < current), INTERVALS[0])


def handle_key(state, key):
    """Apply one key (an int, as curses gives it) to ``state``. While a
    filter is typed, keys go to it: Enter keeps it, Escape drops it."""
    if state.typing is not None:
        if key in ENTER_KEYS:
            state.filter, state.typing = state.typing.strip(), None
        elif key == ESCAPE_KEY:
            state.typing = None
        elif key in BACKSPACE_KEYS:
            state.typing = state.typing[:-1]
        elif 32 <= key < 127:
            state.typing += chr(key)
        return state
    char = chr(key) if 0 <= key < 256 else ""
    if char == "q":
        state.running = False
    elif char in SORTS:
        state.sort = char
    elif char == "/":
        state.typing = ""
    elif char == " ":
        state.paused = not state.paused
    elif char in "+=":
        state.interval_s = _step_interval(state.interval_s, 1)
    elif char in "-_":
        state.interval_s = _step_interval(state.interval_s, -1)
    return state


# -- numbers -------------------------------------------------------------------

def _num(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def compact_bytes(value):
    """1536 -> "1.5K", 5 << 30 -> "5.0G"; "-" for None."""
    value = _num(value)
    if value is None:
        return "-"
    for unit in ("B", "K", "M", "G", "T"):
        if abs(value) < 1024 or unit == "T":
            return ("%d%s" % (value, unit)) if unit == "B" else ("%.1f%s" % (value, unit))
        value /= 1024.0
    return "-"


def compact_bits(value):
    """Bits per second: 12_300_000 -> "12.3Mb"; "-" for None."""
    value = _num(value)
    if value is None:
        return "-"
    for unit in ("b", "Kb", "Mb", "Gb"):
        if abs(value) < 1000 or unit == "Gb":
            return ("%d%s" % (value, unit)) if unit == "b" else ("%.1f%s" % (value, unit))
        value /= 1000.0
    return "-"


def _pct(value):
    value = _num(value)
    return "-" if value is None else "%.1f%%" % value


# -- the screen ------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def printable(text):
    """``text`` on one line: each run of control characters (a newline in a
    `python -c` program, an escape) becomes one space, so a name cannot
    move the cursor or break the row."""
    return _CONTROL.sub(" ", text)


def process_rows(snapshot, rates):
    """The processes of the snapshot's table with their rates, as dicts:
    pid, user, state, comm, command, threads, rss_bytes, cpu_pct,
    io_bytes_per_s, faults_per_s (None where unknown)."""
    table = _get(snapshot, "processes", "processes") or []
    per_pid = _get(rates, "processes") or {}
    rows = []
    for proc in table:
        rate = per_pid.get("%s:%s" % (proc.get("pid"), proc.get("start_time"))) or {}
        read, write = _num(rate.get("read_bytes_per_s")), _num(rate.get("write_bytes_per_s"))
        minor, major = _num(rate.get("minflt_per_s")), _num(rate.get("majflt_per_s"))
        cmdline = list(proc.get("cmdline") or [])
        if cmdline:
            cmdline[0] = cmdline[0].rsplit("/", 1)[-1]  # the program's name: the columns are few
        rows.append({
            "pid": proc.get("pid"), "user": proc.get("user") or str(proc.get("uid", "?")),
            "state": proc.get("state") or "?", "comm": printable(proc.get("comm") or "?"),
            "command": printable(" ".join(cmdline)) if cmdline else "[%s]" % printable(proc.get("comm") or "?"),
            "threads": proc.get("num_threads"), "rss_bytes": _num(proc.get("rss_bytes")),
            "cpu_pct": _num(rate.get("cpu_pct")),
            "io_bytes_per_s": None if read is None and write is None else (read or 0) + (write or 0),
            "faults_per_s": None if minor is None and major is None else (minor or 0) + (major or 0),
        })
    return rows


def select_processes(rows, sort_field, wanted):
    """``rows`` whose name, command or user holds ``wanted`` (any case),
    highest ``sort_field`` first (unknown values last)."""
    wanted = wanted.lower()
    if wanted:
        rows = [r for r in rows if wanted in r["comm"].lower() or wanted in r["command"].lower()
                or wanted in r["user"].lower()]
    return sorted(rows, key=lambda r: (r[sort_field] is not None, r[sort_field] or 0, -(r["pid"] or 0)),
                  reverse=True)


def _clock(ns):
    if ns is None:
        return "--:--:--"
    return datetime.datetime.fromtimestamp(ns / NS).astimezone().strftime("%H:%M:%S")


def _header(frame, state):
    snapshot = frame.get("snapshot") or {}
    meta = snapshot.get("meta") or {}
    status = frame.get("status") or ("PAUSED" if state.paused else "every %gs" % state.interval_s)
    line = "hostdiag top  %s  %s  %s  %s" % (meta.get("hostname") or "?", _clock(meta.get("wall_ns")), status,
                                              frame.get("source") or "")
    load = _get(snapshot, "cpu", "loadavg") or {}
    uptime = _num(_get(snapshot, "cpu", "uptime", "uptime_s"))
    second = "load %s %s %s  up %s" % (load.get("load1", "-"), load.get("load5", "-"), load.get("load15", "-"),
                                       "-" if uptime is None else _uptime(uptime))
    lines = [line, second]
    if frame.get("note"):
        lines.append(frame["note"])
    return lines


def _uptime(seconds):
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    return ("%dd%02dh" % (days, hours)) if days else ("%dh%02dm" % (hours, rest // 60))


def _findings(findings):
    if not findings:
        return ["FINDINGS  none"]
    lines = ["FINDINGS  %d" % len(findings)]
    for finding in findings[:MAX_FINDINGS]:
        lines.append("  %-4s %s" % (str(finding.get("severity", "?")).upper(), finding.get("title", "")))
    if len(findings) > MAX_FINDINGS:
        lines.append("  ... %d more" % (len(findings) - MAX_FINDINGS))
    return lines


def _cpu_memory(snapshot, rates):
    total = _get(rates, "cpu", "total") or {}
    cpu = "CPU   busy %s  user %s  sys %s  iowait %s  steal %s" % (
        _pct(total.get("busy_pct")), _pct(total.get("user_pct")), _pct(total.get("system_pct")),
        _pct(total.get("iowait_pct")), _pct(total.get("steal_pct")))
    meminfo = _get(snapshot, "memory", "meminfo") or {}
    mem_total, available = _num(meminfo.get("MemTotal")), _num(meminfo.get("MemAvailable"))
    swap_total, swap_free = _num(meminfo.get("SwapTotal")), _num(meminfo.get("SwapFree"))
    used = None if mem_total is None or available is None else mem_total - available
    if swap_total is None or swap_free is None:
        swap = "-"
    elif swap_total == 0:
        swap = "none"
    else:
        swap = "%s of %s" % (compact_bytes(swap_total - swap_free), compact_bytes(swap_total))
    mem = "MEM   used %s of %s  available %s  swap %s" % (compact_bytes(used), compact_bytes(mem_total),
                                                         compact_bytes(available), swap)
    return [cpu, mem]


def _disks(rates, count=2):
    disks = _get(rates, "disks") or {}
    busiest = sorted(disks.items(), key=lambda item: _num(item[1].get("util_pct")) or 0, reverse=True)[:count]
    if not busiest:
        return ["DISK  -"]
    return ["DISK  " + "   ".join("%s %s r %s/s w %s/s" % (
        name, _pct(d.get("util_pct")), compact_bytes(d.get("read_bytes_per_s")),
        compact_bytes(d.get("write_bytes_per_s"))) for name, d in busiest)]


def _network(rates, count=2):
    links = _get(rates, "network", "links") or {}

    def traffic(item):
        return (_num(item[1].get("rx_bits_per_s")) or 0) + (_num(item[1].get("tx_bits_per_s")) or 0)

    busiest = sorted(((n, l) for n, l in links.items() if n != "lo"), key=traffic, reverse=True)[:count]
    if not busiest:
        return ["NET   -"]
    return ["NET   " + "   ".join("%s rx %s/s tx %s/s" % (name, compact_bits(l.get("rx_bits_per_s")),
                                                        compact_bits(l.get("tx_bits_per_s")))
                                for name, l in busiest)]


def _workload_items(snapshot, rates):
    """[(label, row, its rates)] of the cgroups that are workloads: not the
    root, not a slice (the sum of its children), one path per workload."""
    section = snapshot.get("cgroups")
    known = section.get("workloads") if isinstance(section, dict) else None
    per = _get(rates, "cgroups") or {}
    seen, items = set(), []
    for row in sorted((r for r in section.get("cgroups") or () if isinstance(r, dict)
                       and isinstance(r.get("path"), str)), key=lambda r: r["path"]):
        workload = (known or {}).get(row["path"]) if isinstance(known, dict) else None
        workload = workload if isinstance(workload, dict) else {"kind": "other", "name": row["path"]}
        identity = (workload.get("kind"), workload.get("name"), workload.get("id"))
        if row["path"] == "/" or workload.get("kind") == "slice" or identity in seen:
            continue
        seen.add(identity)
        items.append((printable(workload_label(workload, row["path"], WORKLOAD_WIDTH)), row,
                      per.get(row["path"]) or {}))
    return items


def _workloads(snapshot, rates):
    """The WORKLOADS pane: the busiest workloads by CPU (by memory before the
    first rates), with memory, its limit and CPU throttling; nothing
    without a cgroup table."""
    section = snapshot.get("cgroups")
    if not isinstance(section, dict):
        return []
    items = _workload_items(snapshot, rates)

    def rank(item):
        return (_num(item[2].get("cpu_pct")) or 0, _num(_get(item[1], "memory", "current")) or 0)

    top = sorted(items, key=rank, reverse=True)[:MAX_WORKLOADS]
    lines = ["WORKLOADS  %d cgroups, top by cpu" % len(section.get("cgroups") or ())]
    for label, row, r in top:
        limit = limit_bytes(_get(row, "memory", "max"))
        memory = compact_bytes(_num(_get(row, "memory", "current")))
        throttled = _num(r.get("throttled_periods_pct"))
        lines.append("  %-*s cpu %6s  mem %6s%s%s" % (
            WORKLOAD_WIDTH, label, _pct(r.get("cpu_pct")), memory, " of %s" % compact_bytes(limit) if limit else "",
            "  throttled %s" % _pct(throttled) if throttled else ""))
    return lines


PROCESS_HEADER = "%7s %-8s %1s %6s %7s %7s %7s %4s  %s" % ("PID", "USER", "S", "CPU%", "RSS", "IO/s", "FLT/s",
                                                          "THR", "COMMAND")


def _process_line(row):
    return "%7s %-8.8s %1.1s %6s %7s %7s %7s %4s  %s" % (
        row["pid"], row["user"], row["state"], "-" if row["cpu_pct"] is None else "%.1f" % row["cpu_pct"],
        compact_bytes(row["rss_bytes"]), compact_bytes(row["io_bytes_per_s"]),
        "-" if row["faults_per_s"] is None else "%.0f" % row["faults_per_s"],
        "-" if row["threads"] is None else row["threads"], row["command"])


#: The keys of the live screen, after the sort and filter on the key line.
LIVE_HINTS = "c m i f sort  / filter  space pause  +- every  q quit"


def render_screen(frame, state, width=80, height=24, hints=None):
    """The lines of the screen for ``frame`` ({"snapshot", "rates",
    "findings", "source", "note", "status" (instead of the interval)}; rates None before the second sample) and
    ``state``: at most ``height`` lines, none wider than ``width``. The
    WORKLOADS pane (with a cgroup table) is shown when :data:`MIN_PROCESS_ROWS`
    process rows still fit below it. ``hints``:
    the keys to list (default :data:`LIVE_HINTS`)."""
    snapshot, rates = frame.get("snapshot") or {}, frame.get("rates")
    lines = _header(frame, state)
    lines += _findings(frame.get("findings") or [])
    lines += _cpu_memory(snapshot, rates) + _disks(rates) + _network(rates)
    workloads = _workloads(snapshot, rates)
    if height - len(lines) - len(workloads) - 3 >= MIN_PROCESS_ROWS:   # 3: blank, keys, column names
        lines += workloads
    name, field = SORTS[state.sort]
    rows = select_processes(process_rows(snapshot, rates), field, state.filter)
    if state.typing is not None:
        keys = "filter: %s_   (Enter keep, Esc drop)" % state.typing
    else:
        keys = "sort %s  filter %s  | %s" % (name, repr(state.filter) if state.filter else "none",
                                            hints or LIVE_HINTS)
    lines.append("")
    lines.append(keys)
    if _get(snapshot, "processes") is None:
        lines.append("no process table in this sample")
    else:
        lines.append(PROCESS_HEADER)
        room = max(0, height - len(lines))
        lines.extend(_process_line(row) for row in rows[:room])
    return [line[:width] for line in lines[:height]]


# -- the curses driver --------------------------------------------------------------

#: How often keys are read while waiting for the next frame (milliseconds).
KEY_POLL_MS = 100


def run_screen(fetch, state, first_note="sampling...", navigate=None, hints=None):
    """Draw ``fetch()`` (a frame, see :func:`render_screen`) every
    ``state.interval_s`` until q; keys change ``state`` between frames.
    ``fetch`` is not called while paused. ``navigate(key)``, when given, sees
    each key first; when it returns True the key was its own and the frame
    is fetched again at once (the replay's moves). ``hints``: the key line
    to show instead of the live one."""
    import curses
    import locale

    locale.setlocale(locale.LC_ALL, "")  # curses draws non-ASCII names only under the user's locale

    def loop(screen):
        curses.curs_set(0)
        screen.timeout(KEY_POLL_MS)
        frame = {"note": first_note}
        due = time.monotonic()
        while state.running:
            if not state.paused and time.monotonic() >= due:
                frame = fetch()
                due = time.monotonic() + state.interval_s
            height, width = screen.getmaxyx()
            screen.erase()
            for row, line in enumerate(render_screen(frame, state, width - 1, height, hints)):
                try:
                    screen.addstr(row, 0, line)
                except curses.error:
                    continue  # a line of wide characters longer than the row: the row stays as drawn so far
            screen.refresh()
            key = screen.getch()
            if key != -1 and state.typing is None and navigate is not None and navigate(key):
                due = time.monotonic()
            elif key != -1:
                before = state.interval_s
                handle_key(state, key)
                if state.interval_s != before:
                    due = min(due, time.monotonic() + state.interval_s)

    curses.wrapper(loop)
