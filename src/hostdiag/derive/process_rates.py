"""Per-process rates from two samples of the processes section, and the top lists.

A process is identified by ``"pid:start_time"`` (:func:`process_key`): a pid
reused between the samples is a new process with no previous sample. Every
rate is ``None`` (never negative or huge) when the process has no previous
sample, when a counter went backwards, when either side is ``None`` (access
denied) or when the interval is not positive.

:func:`process_rates` returns ``{"pid:start_time": rates}`` for every process of
the current sample, where rates are::

    cpu_pct            CPU time (user + system) as percent of one CPU over the
                       interval; a process with several busy threads exceeds 100,
                       as in top
    read_bytes_per_s   storage bytes read / written per second (io's read_bytes
    write_bytes_per_s  and write_bytes)
    minflt_per_s       minor / major page faults per second
    majflt_per_s
    ctxsw_per_s        voluntary + involuntary context switches per second
"""

RATE_FIELDS = ("cpu_pct", "read_bytes_per_s", "write_bytes_per_s", "minflt_per_s",
               "majflt_per_s", "ctxsw_per_s")
TOP_CATEGORIES = ("cpu", "rss", "io", "faults")
# The counters the rates are made of. A record that is the previous record
# object itself (the process table returns it for a process whose stat did not
# move) has every rate 0.0 when all of these are ints: _UNCHANGED, copied.
_COUNTER_FIELDS = ("utime", "stime", "read_bytes", "write_bytes", "minflt", "majflt",
                   "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")
_UNCHANGED = dict.fromkeys(RATE_FIELDS, 0.0)
_ALL_INT = (int,) * len(_COUNTER_FIELDS)


def process_key(record):
    """The identity of a process record: ``"pid:start_time"``; None for a
    record that has no integer pid and start time (a damaged stored snapshot)."""
    if not isinstance(record, dict):
        return None
    pid, start = record.get("pid"), record.get("start_time")
    if type(pid) is int and type(start) is int:  # the common case, without the checks below
        return "%d:%d" % (pid, start)
    if not isinstance(pid, int) or not isinstance(start, int):
        return None
    return "%d:%d" % (pid, start)


def _sum(record, *fields):
    total = 0
    for field in fields:
        value = record.get(field)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return None
        total += value
    return total


def _rate(old, new, dt_s, *fields):
    a = _sum(old, *fields)
    b = _sum(new, *fields)
    if a is None or b is None or b < a:
        return None
    return (b - a) / dt_s


def process_rates(prev_section, cur_section, dt_s, clock_ticks):
    """Rates of every process of ``cur_section`` against ``prev_section``.

    ``dt_s`` is the interval in seconds (the difference of the snapshots'
    monotonic times); ``clock_ticks`` is USER_HZ, the unit of utime and stime.
    """
    previous = {}
    if prev_section:
        previous = {process_key(r): r for r in prev_section.get("processes") or ()}
        previous.pop(None, None)
    comparable = isinstance(dt_s, (int, float)) and dt_s > 0 and bool(clock_ticks)
    result = {}
    for record in (cur_section or {}).get("processes") or ():
        key = process_key(record)
        if key is None:
            continue
        old = previous.get(key) if comparable else None
        if old is None:
            result[key] = dict.fromkeys(RATE_FIELDS)
            continue
        if old is record and tuple(map(type, map(record.get, _COUNTER_FIELDS))) == _ALL_INT:
            # What the computation below gives for equal int counters, without it.
            result[key] = _UNCHANGED.copy()
            continue
        cpu = _rate(old, record, dt_s, "utime", "stime")
        result[key] = {
            "cpu_pct": None if cpu is None else 100.0 * cpu / clock_ticks,
            "read_bytes_per_s": _rate(old, record, dt_s, "read_bytes"),
            "write_bytes_per_s": _rate(old, record, dt_s, "write_bytes"),
            "minflt_per_s": _rate(old, record, dt_s, "minflt"),
            "majflt_per_s": _rate(old, record, dt_s, "majflt"),
            "ctxsw_per_s": _rate(old, record, dt_s, "voluntary_ctxt_switches",
                                 "nonvoluntary_ctxt_switches"),
        }
    return result


def _row(record, **values):
    row = {"pid": record["pid"], "start_time": record["start_time"],
           "comm": record.get("comm"), "user": record.get("user")}
    row.update(values)
    return row


def _add(a, b):
    if a is None and b is None:
        return None
    return (a or 0) + (b or 0)


def top_processes(section, rates, n=5):
    """The ``n`` processes with the most CPU, resident memory, storage I/O and
    page faults, as ``{"cpu": [row], "rss": [...], "io": [...], "faults": [...]}``.

    A row is ``{"pid", "start_time", "comm", "user"}`` plus its measure:
    ``cpu_pct``; ``rss_bytes``; ``read_bytes_per_s``, ``write_bytes_per_s`` and
    their sum ``io_bytes_per_s``; ``minflt_per_s``, ``majflt_per_s`` and their
    sum ``faults_per_s``. Lists are ordered by the measure, largest first (ties
    by pid), and hold only processes whose measure is known and above zero, so
    they may be shorter than ``n``.
    """
    candidates = {category: [] for category in TOP_CATEGORIES}
    for record in (section or {}).get("processes") or ():
        if process_key(record) is None:
            continue
        r = rates.get(process_key(record)) or {}
        cpu = r.get("cpu_pct")
        candidates["cpu"].append((cpu, _row(record, cpu_pct=cpu)))
        rss = record.get("rss_bytes")
        candidates["rss"].append((rss, _row(record, rss_bytes=rss)))
        io = _add(r.get("read_bytes_per_s"), r.get("write_bytes_per_s"))
        candidates["io"].append((io, _row(
            record, read_bytes_per_s=r.get("read_bytes_per_s"),
            write_bytes_per_s=r.get("write_bytes_per_s"), io_bytes_per_s=io)))
        faults = _add(r.get("minflt_per_s"), r.get("majflt_per_s"))
        candidates["faults"].append((faults, _row(
            record, minflt_per_s=r.get("minflt_per_s"), majflt_per_s=r.get("majflt_per_s"),
            faults_per_s=faults)))
    top = {}
    for category, rows in candidates.items():
        known = [(value, row) for value, row in rows if value is not None and value > 0]
        known.sort(key=lambda item: (-item[0], item[1]["pid"]))
        top[category] = [row for _, row in known[:n]]
    return top
