"""The culprits of a finding: which processes or connections explain it.

A process culprit is ``{"kind": "process", "pid", "start_time", "comm",
"user", "command"}`` plus the measure it was ranked by (``cpu_pct``,
``io_bytes_per_s``, ``rss_bytes``, ``majflt_per_s``, ``rss_growth_bytes_per_s``,
``rss_leak_bytes_per_s`` with ``fit_r2``, ``fd_count`` with ``fd_limit``,
``threads``, ``blocked_s``, ``fault``), or ``{"kind": "parent", ...,
"zombies": n}``; an OOM victim from the kernel log is ``{"kind": "victim",
"pid", "comm", "cgroup"}`` and a user ``{"kind": "user", "uid", "user",
"tasks", "nproc_limit"}``; a connection is ``{"kind": "connection", "local",
"remote", "state", "rtt_ms", "total_retrans", "retrans_per_s", "processes"}``
and a listener ``{"kind": "listener", "local", "backlog", "backlog_max",
"processes"}``, where ``processes`` lists ``{"pid", "comm"}`` of the holders
found (the caller maps the sockets that :func:`socket_inodes_named` returns
into ``sockets["owners"]``). Without the process or socket table the lists
are empty.
"""

import contextlib
import contextvars
import heapq

from hostdiag.derive.process_rates import process_key
from hostdiag.derive.socket_rates import listeners_overflowing, top_connections
from hostdiag.findings.values import get, num, rounded, show
from hostdiag.findings.workloads import in_cgroup, workload_label

# Processes or connections named per finding, and connections ranked per
# measure (the report shows the same ranking).
CULPRITS = 3
TOP_CONNECTIONS = 3
# Full listeners named.
MAX_FULL_LISTENERS = 5
# Characters of a command line kept in a culprit.
COMMAND_WIDTH = 80


def _command(record):
    args = record.get("cmdline")
    if record.get("kernel_thread") or not isinstance(args, (list, tuple)) or not args:
        return "[%s]" % record.get("comm")
    text = " ".join(str(a) for a in args)
    return text if len(text) <= COMMAND_WIDTH else text[:COMMAND_WIDTH - 3] + "..."


def process_culprit(record, kind="process", **measures):
    culprit = {"kind": kind, "pid": record.get("pid"), "start_time": record.get("start_time"),
               "comm": record.get("comm"), "user": record.get("user"), "command": _command(record)}
    culprit.update((key, rounded(value)) for key, value in measures.items())
    return culprit


# The measures of one evaluation, computed once and shared by its rules
# (:func:`shared_measures`): {(what, id(source), ...): (sources, value)}. The
# sources are held so that their ids are not reused while the evaluation
# lasts; the memo lives only as long as the ``with`` block, one per thread (a
# context variable): a few lists of one or two snapshots' processes.
_SHARED = contextvars.ContextVar("hostdiag_findings_shared", default=None)


@contextlib.contextmanager
def shared_measures():
    """Within the block, :func:`process_records`, :func:`keyed_records` and
    :func:`records_by_key` compute each list once per processes list, and
    :func:`top_culprits` reads each process's rates once per (snapshot,
    rates): one evaluation's rules then share them instead of walking every
    process again. The snapshots must not change inside the block."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def shared_measure(what, sources, compute):
    """``compute()``, once per ``what`` and identity of each of ``sources``
    within :func:`shared_measures`; every time outside it. ``compute`` must
    depend on nothing but ``sources``."""
    memo = _SHARED.get()
    if memo is None:
        return compute()
    key = (what,) + tuple(id(source) for source in sources)
    entry = memo.get(key)
    if entry is None:
        entry = memo[key] = (sources, compute())
    return entry[1]


def _records_list(snapshot):
    section = getattr(snapshot, "processes", None)
    return section.get("processes") if isinstance(section, dict) else None


def _valid_records(records):
    return [r for r in records or () if isinstance(r, dict) and num(r.get("pid")) is not None]


def process_records(snapshot):
    """The process records of ``snapshot`` that are maps with a numeric pid;
    shared within :func:`shared_measures` (do not change the list)."""
    records = _records_list(snapshot)
    return shared_measure("records", (records,), lambda: _valid_records(records))


def keyed_records(snapshot):
    """[(process_key, record)] of :func:`process_records` (the key None for a
    record without integer pid and start time)."""
    return shared_measure("keyed", (_records_list(snapshot),),
                          lambda: [(process_key(r), r) for r in process_records(snapshot)])


def records_by_key(snapshot):
    """{process_key: record} of :func:`process_records` (the last record wins)."""
    return shared_measure("by_key", (_records_list(snapshot),), lambda: dict(keyed_records(snapshot)))


def _with_rates(snapshot, rates):
    """[(record, its rates or {})] of :func:`process_records`."""
    per = get(rates, "processes")
    if not isinstance(per, dict):
        return [(record, {}) for record in process_records(snapshot)]
    return [(record, {} if num(record.get("start_time")) is None else per.get(key) or {})
            for key, record in keyed_records(snapshot)]


def _io_bytes_per_s(r):
    read, write = num(r.get("read_bytes_per_s")), num(r.get("write_bytes_per_s"))
    return None if read is None and write is None else (read or 0) + (write or 0)


# measure name -> how to read it from (record, its rates)
_MEASURES = {
    "cpu_pct": lambda record, r: r.get("cpu_pct"),
    "io_bytes_per_s": lambda record, r: _io_bytes_per_s(r),
    "majflt_per_s": lambda record, r: r.get("majflt_per_s"),
    "rss_bytes": lambda record, r: record.get("rss_bytes"),
}


def _ranked(snapshot, rates, measure):
    """[(value, -pid, record)] of every process whose ``measure`` is above
    zero, in the records' order; most are zero (an idle process), so this
    list is short and each ranking of the evaluation starts from it."""
    read = _MEASURES[measure]
    ranked = []
    for record, per in shared_measure("rates", (_records_list(snapshot), rates),
                                      lambda: _with_rates(snapshot, rates)):
        value = num(read(record, per))
        if value is not None and value > 0:
            ranked.append((value, -record["pid"], record))
    return ranked


def top_culprits(snapshot, rates, measure, n=CULPRITS, cgroup=None):
    """The ``n`` processes with the largest ``measure`` (a key of
    :data:`_MEASURES`) above zero, as process culprits; empty without a
    process table (or without rates, for a rate). With ``cgroup`` (a path),
    only the processes in that cgroup or below it."""
    ranked = shared_measure(("ranked", measure), (_records_list(snapshot), rates),
                            lambda: _ranked(snapshot, rates, measure))
    if cgroup is not None:
        ranked = [item for item in ranked if in_cgroup(item[2], cgroup)]
    return [process_culprit(record, **{measure: value})
            for value, _, record in heapq.nlargest(n, ranked, key=lambda item: item[:2])]


def _endpoint(address, port):
    return ("[%s]:%s" if ":" in str(address) else "%s:%s") % (address, port)


def _holders(snapshot, inode):
    owners = get(snapshot.sockets, "owners")
    holders = owners.get(str(inode)) if isinstance(owners, dict) and inode else None
    return [{"pid": h.get("pid"), "comm": h.get("comm")} for h in holders or () if isinstance(h, dict)]


def connection_culprit(snapshot, entry):
    rtt = num(entry.get("rtt"))
    return {"kind": "connection",
            "local": _endpoint(entry.get("local"), entry.get("local_port")),
            "remote": _endpoint(entry.get("remote"), entry.get("remote_port")),
            "state": entry.get("state"), "rtt_ms": None if rtt is None else round(rtt / 1000.0, 2),
            "total_retrans": entry.get("total_retrans"),
            "retrans_per_s": rounded(entry.get("retrans_per_s")),
            "processes": _holders(snapshot, entry.get("inode"))}


def listener_culprit(snapshot, listener):
    return {"kind": "listener", "local": _endpoint(listener.get("local"), listener.get("local_port")),
            "backlog": listener.get("backlog"), "backlog_max": listener.get("backlog_max"),
            "processes": _holders(snapshot, listener.get("inode"))}


def socket_section(snapshot):
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
    sockets = socket_section(snapshot)
    if sockets is None:
        return {"retrans": [], "rtt": [], "queue": []}
    per_connection = get(rates, "sockets")
    per_connection = per_connection if isinstance(per_connection, dict) else None
    last = _last_ranking[0]
    if last is not None and last[0] is sockets and last[1] is per_connection:
        return last[2]
    ranking = top_connections(sockets, per_connection, TOP_CONNECTIONS)
    _last_ranking[0] = (sockets, per_connection, ranking)
    return ranking


def retransmitting(snapshot, rates):
    """The top connections by retransmits per second, with a known rate above zero."""
    if not isinstance(get(rates, "sockets"), dict):
        return []
    top = connection_rankings(snapshot, rates)
    return [e for e in top.get("retrans") or () if (num(e.get("retrans_per_s")) or 0) > 0]


def full_listeners(snapshot):
    sockets = socket_section(snapshot)
    return listeners_overflowing(sockets)[:MAX_FULL_LISTENERS] if sockets is not None else []


def socket_inodes_named(snapshot, rates):
    """The inodes of the sockets the rules may name: their holders are looked
    up by the caller into ``sockets["owners"]`` before :func:`evaluate`."""
    entries = retransmitting(snapshot, rates) + full_listeners(snapshot)
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
    ("rss_leak_bytes_per_s", lambda v: "leaks %.1f MiB/min" % (v * 60 / _MIB)),
    ("rss_growth_bytes_per_s", lambda v: "grows %.1f MiB/s" % (v / _MIB)),
    ("blocked_s", lambda v: "blocked > %d s" % v),
    ("threads", lambda v: "%d threads" % v),
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
            culprit.get("local"), culprit.get("remote"), show(culprit.get("retrans_per_s")),
            _owner_text(culprit.get("processes")))
    if kind == "listener":
        return "%s backlog %s/%s%s" % (culprit.get("local"), culprit.get("backlog"),
                                       culprit.get("backlog_max"),
                                       _owner_text(culprit.get("processes")))
    if kind == "user":
        return "user %s %s of %s tasks" % (culprit.get("user") or culprit.get("uid"), culprit.get("tasks"),
                                          culprit.get("nproc_limit"))
    name = "%s[%s]" % (culprit.get("comm"), culprit.get("pid"))
    if kind == "parent":
        return "%s has %s zombie(s)" % (name, culprit.get("zombies"))
    if kind == "victim":
        cgroup = culprit.get("cgroup")
        return "killed %s%s" % (name, " in %s" % workload_label({"kind": "other"}, cgroup) if cgroup else "")
    if culprit.get("fault"):
        return "%s %s" % (name, culprit["fault"])
    if num(culprit.get("fd_limit")) is not None:
        return "%s %s of %s fds" % (name, culprit.get("fd_count"), culprit.get("fd_limit"))
    for key, words in _CULPRIT_UNITS:
        value = num(culprit.get(key))
        if value is not None:
            return "%s %s" % (name, words(value))
    return name
