"""Pure-Python twins of the per-process parsers and scanner in ``csrc/_procpid.pyx``:
the files of one process, /proc/PID/*.

Two kinds of function live here, with the same names, signatures and output in
both twins:

* parsers of one per-pid file (``parse_stat``, ``parse_status``, ``parse_statm``,
  ``parse_io``): they take the whole file as ``bytes``, return
  ``(result, malformed)`` and do no I/O, like the parsers in ``proctext``;
* :func:`scan`, the reader of the process table: it opens each ``/proc/PID``
  directory once, reads the per-pid files through that directory's descriptor
  into one reused buffer, parses them and builds one record per process. The
  compiled twin does the same with libc calls and no Python in the loop.

The cold-path parsers ``parse_cmdline``, ``parse_cgroup`` and
``parse_oom_score_adj`` run once per process life (their results are cached by
the process table), so both twins share the Python ones defined here.

The grammar both implementations share, so that they agree on any input:

* lines are split on ``\\n``; tokens on ASCII white space (space, \\t, \\n, \\r,
  \\v, \\f); an unsigned number is 1 to 20 ASCII digits below 2**64, a signed
  one may lead with ``-`` (as in ``proctext``); names are UTF-8 with invalid
  bytes replaced;
* stat: ``PID (COMM) STATE FIELD4 FIELD5 ...``. COMM is everything between the
  first ``(`` and the last ``)``, so a comm holding spaces, parentheses or
  newlines survives. Before the ``(`` there must be exactly one token, an
  unsigned number. After the ``)`` there must be fields 3 to 24 of proc(5)
  (every kernel since 2.6 gives them); STATE is one byte; each number listed in
  :data:`STAT_NUMBERS` that the file gives must parse, and one the file does
  not give (older kernels stop before field 42 or 48) is ``None``. Anything else is
  one malformed file and the result is ``None``;
* status: only the ``Uid:`` line (four unsigned numbers) and the two
  ``*ctxt_switches:`` lines (one unsigned number) are read; such a line of the
  wrong shape is malformed and its field stays ``None``; other lines are not
  looked at; when a line repeats, the last one wins;
* statm: at least seven unsigned numbers, else ``None`` and one malformed;
* io: every non-empty line must be ``NAME: NUMBER`` (two tokens, the first
  ending in ``:``), else it is skipped and counted; names not in
  :data:`IO_FIELDS` are ignored.

Units: times are clock ticks (USER_HZ), sizes in the parsers are pages
(``*_pages``) or bytes (``*_bytes``); the scanner's records hold bytes.
"""

import errno
import os

# The number grammar is proctext's, so both modules share its helpers.
from hostdiag.parsers.proctext import _signed, _unsigned
from hostdiag.parsers.procraces import DENIED, REQUIRED_FILE, VANISHED, classify
from hostdiag.parsers.redact import redact_argv

# /proc/PID/stat fields read, as (name, field number in proc(5), signed).
STAT_NUMBERS = (
    ("ppid", 4, False),
    ("flags", 9, False),
    ("minflt", 10, False),
    ("majflt", 12, False),
    ("utime", 14, False),
    ("stime", 15, False),
    ("priority", 18, True),
    ("nice", 19, True),
    ("num_threads", 20, False),
    ("start_time", 22, False),
    ("vsize_bytes", 23, False),
    ("rss_pages", 24, False),
    ("delayacct_blkio_ticks", 42, False),
    # Where the argument strings start and end in the process's memory (since
    # 3.5; 0 when the reader may not ptrace the process). They change on exec
    # (the stack is placed anew), which tells an exec of the same program (same
    # comm) from the process that was cached.
    ("arg_start", 48, False),
    ("arg_end", 49, False),
)
# The last field every kernel's stat has (rss); a shorter stat is malformed.
STAT_LAST_REQUIRED_FIELD = 24
# task->flags bit of a kernel thread (include/linux/sched.h, since 2.6.27).
PF_KTHREAD = 0x00200000

STATUS_FIELDS = ("uid", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")
# statm columns kept, as (column, name); columns 4 (lib) and 6 (dt) are always 0.
STATM_COLUMNS = ((0, "size_pages"), (1, "resident_pages"), (2, "shared_pages"),
                 (3, "text_pages"), (5, "data_pages"))
# A statm line has this many columns.
STATM_MIN_COLUMNS = 7
IO_FIELDS = ("rchar", "wchar", "syscr", "syscw", "read_bytes", "write_bytes",
             "cancelled_write_bytes")
# io fields that may be negative: proc(5) calls cancelled_write_bytes "negative
# I/O" (dirty page cache this task truncated), and recorded trees show it below 0.
IO_SIGNED = ("cancelled_write_bytes",)

# The keys of a scanned record, in order. cmdline, user, cgroup and
# oom_score_adj are the cached facts: the scanner leaves them None for a
# process it has no valid cache entry for, and the process table fills them.
RECORD_KEYS = (
    "pid", "ppid", "comm", "cmdline", "state", "uid", "user", "start_time",
    "kernel_thread", "utime", "stime", "minflt", "majflt", "num_threads", "nice",
    "priority", "rss_bytes", "vsize_bytes", "delayacct_blkio_ticks",
    "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches", "read_bytes",
    "write_bytes", "fd_count", "cgroup", "oom_score_adj", "denied",
)
FACT_FILES = ("cmdline", "cgroup", "oom_score_adj")
# The facts of a cache entry (the process table fills them from FACT_FILES and the uid).
FACT_KEYS = ("cmdline", "user", "cgroup", "oom_score_adj")

# How the scanner counts open file descriptors.
FD_OFF = 0      # not collected: fd_count is None
FD_SIZE = 1     # st_size of /proc/PID/fd: the count, on Linux 6.2 and later
FD_LIST = 2     # the entries of /proc/PID/fd: any kernel, about 3 times the stat()

# The reused read buffer starts here and doubles up to the cap.
INITIAL_BUFFER = 64 * 1024
DEFAULT_READ_CAP = 16 * 1024 * 1024



def parse_stat(data):
    """/proc/PID/stat. Returns ``{"pid", "comm", "state", <STAT_NUMBERS>}`` or None.

    Times are clock ticks, ``start_time`` is clock ticks after boot,
    ``vsize_bytes`` is bytes and ``rss_pages`` pages.
    """
    lp = data.find(b"(")
    rp = data.rfind(b")")
    if lp < 0 or rp < lp:
        return None, 1
    head = data[:lp].split()
    pid = _unsigned(head[0]) if len(head) == 1 else None
    tokens = data[rp + 1:].split()
    if pid is None or len(tokens) < STAT_LAST_REQUIRED_FIELD - 2 or len(tokens[0]) != 1:
        return None, 1
    result = {"pid": pid, "comm": data[lp + 1:rp].decode("utf-8", "replace"),
              "state": tokens[0].decode("utf-8", "replace")}
    for name, number, signed in STAT_NUMBERS:
        index = number - 3
        if index < len(tokens):
            value = _signed(tokens[index]) if signed else _unsigned(tokens[index])
            if value is None:
                return None, 1
            result[name] = value
        else:
            result[name] = None
    return result, 0


_STATUS_LINES = (
    (b"Uid:", "uid", 4),
    (b"voluntary_ctxt_switches:", "voluntary_ctxt_switches", 1),
    (b"nonvoluntary_ctxt_switches:", "nonvoluntary_ctxt_switches", 1),
)


def parse_status(data):
    """/proc/PID/status, three lines of it. Returns ``{"uid", "voluntary_ctxt_switches",
    "nonvoluntary_ctxt_switches"}``; ``uid`` is the effective uid (the second
    number of ``Uid:``), the one ps and top show."""
    result = dict.fromkeys(STATUS_FIELDS)
    malformed = 0
    for line in data.split(b"\n"):
        for prefix, name, count in _STATUS_LINES:
            if line.startswith(prefix):
                values = [_unsigned(t) for t in line[len(prefix):].split()]
                if len(values) != count or None in values:
                    malformed += 1
                else:
                    result[name] = values[1] if count == 4 else values[0]
                break
    return result, malformed


def parse_statm(data):
    """/proc/PID/statm in pages: ``{"size_pages", "resident_pages", "shared_pages",
    "text_pages", "data_pages"}`` or None. The first seven columns must be
    numbers; more columns are ignored. (The process table does not read statm:
    stat gives the same size and resident counts as vsize and rss.)"""
    tokens = data.split()
    if len(tokens) < STATM_MIN_COLUMNS:
        return None, 1
    values = [_unsigned(t) for t in tokens[:STATM_MIN_COLUMNS]]
    if None in values:
        return None, 1
    return {name: values[column] for column, name in STATM_COLUMNS}, 0


def parse_io(data):
    """/proc/PID/io: ``{<IO_FIELDS>}`` in bytes (``syscr``/``syscw`` are counts of
    read and write system calls); a field the file does not give is None. The
    fields of :data:`IO_SIGNED` are signed numbers, every other one unsigned."""
    result = dict.fromkeys(IO_FIELDS)
    malformed = 0
    for line in data.split(b"\n"):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 2 or len(tokens[0]) < 2 or tokens[0][-1:] != b":":
            malformed += 1
            continue
        name = tokens[0][:-1].decode("utf-8", "replace")
        value = _signed(tokens[1]) if name in IO_SIGNED else _unsigned(tokens[1])
        if value is None:
            malformed += 1
            continue
        if name in result:
            result[name] = value
    return result, malformed


def parse_cmdline(data):
    """/proc/PID/cmdline: the arguments, redacted (see docs/redaction.md).

    Arguments are NUL-terminated; a process that rewrote its arguments
    (setproctitle) may leave one string with spaces and no terminator, which is
    returned as one argument. Empty for kernel threads and zombies.
    """
    if data.endswith(b"\0"):
        data = data[:-1]
    if not data:
        return [], 0
    return redact_argv([arg.decode("utf-8", "replace") for arg in data.split(b"\0")]), 0


def parse_cgroup(data):
    """/proc/PID/cgroup: one cgroup path for the process, or None.

    Lines are ``ID:CONTROLLERS:PATH`` (PATH may hold colons). The path chosen:

    1. the cgroup v2 line (``0::PATH``) when it is the only hierarchy (pure v2)
       or its PATH is not ``/`` (hybrid mode with processes placed in the
       unified tree, as systemd does);
    2. else the v1 ``memory`` controller's path, then ``cpu`` (alone or
       co-mounted as ``cpu,cpuacct``), then ``name=systemd``: on a v1 or hybrid
       host with an empty unified tree (this machine), these are where
       containers and services are placed;
    3. else the v2 path (``/``), else None.

    A line without two colons is malformed and skipped.
    """
    v2 = None
    v1 = {}
    malformed = 0
    lines = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        parts = line.split(b":", 2)
        if len(parts) != 3:
            malformed += 1
            continue
        lines += 1
        path = parts[2].decode("utf-8", "replace")
        if parts[0] == b"0" and parts[1] == b"":
            v2 = path
        else:
            for controller in parts[1].split(b","):
                v1.setdefault(controller, path)
    if v2 is not None and (lines == 1 or v2 != "/"):
        return v2, malformed
    for controller in (b"memory", b"cpu", b"name=systemd"):
        if controller in v1:
            return v1[controller], malformed
    return v2, malformed


def parse_oom_score_adj(data):
    """/proc/PID/oom_score_adj: -1000 (never killed) to 1000, or None."""
    tokens = data.split()
    value = _signed(tokens[0]) if len(tokens) == 1 else None
    return value, 0 if value is not None else 1


def kernel_thread(pid, ppid, flags, vsize_bytes, state):
    """True for a kernel thread: PF_KTHREAD set in stat's flags.

    Kernels before 2.6.27 have no PF_KTHREAD; there kthreadd (pid 2) and its
    children are kernel threads. pid or ppid 2 alone is not trusted, because in
    a pid namespace pid 2 is an ordinary process: the fallback also needs no
    address space (vsize 0), which of user processes only zombies have.
    """
    return bool(flags & PF_KTHREAD) or (
        (pid == 2 or ppid == 2) and vsize_bytes == 0 and state != "Z")


def list_pids(proc_root):
    """The numeric entry names of ``proc_root`` as ints, ascending."""
    return sorted(int(name) for name in os.listdir(proc_root)
                  if name.isdigit() and name.isascii() and len(name) <= 10)


class _Buffer:
    """One growable read buffer, reused for every file of a scan."""

    __slots__ = ("data", "view", "cap")

    def __init__(self, cap):
        self.cap = cap
        self.data = bytearray(min(INITIAL_BUFFER, cap))
        self.view = memoryview(self.data)

    def read_at(self, dirfd, name):
        """The file ``name`` under ``dirfd`` as bytes, or an errno (EFBIG: cap reached).

        The per-pid files are single-record seq files: the kernel formats the
        whole file and a read returns all that fits, so a read that leaves room
        in the buffer has read everything and no extra read for EOF is made.
        """
        try:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dirfd)
        except OSError as exc:
            return exc.errno
        try:
            size = 0
            while True:
                try:
                    n = os.readv(fd, [self.view[size:]])
                except OSError as exc:
                    return exc.errno
                size += n
                if n == 0 or size < len(self.data):
                    return bytes(self.view[:size])
                if len(self.data) >= self.cap:
                    return errno.EFBIG
                self.view.release()
                self.data.extend(bytes(min(len(self.data), self.cap - len(self.data))))
                self.view = memoryview(self.data)
        finally:
            os.close(fd)


def _fd_count(dirfd, fd_mode):
    """``(count, None)``, or ``(None, errno)`` when the count could not be taken."""
    try:
        if fd_mode == FD_SIZE:
            return os.stat("fd", dir_fd=dirfd).st_size, None
        fd = os.open("fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dirfd)
        try:
            return len(os.listdir(fd)), None
        finally:
            os.close(fd)
    except OSError as exc:
        return None, exc.errno


def _gone(dirfd):
    """True when the process open at ``dirfd`` has vanished: its
    :data:`~hostdiag.parsers.procraces.REQUIRED_FILE` can no longer be found."""
    try:
        os.stat(REQUIRED_FILE, dir_fd=dirfd)
    except OSError as exc:
        return classify(exc.errno) == VANISHED
    return False


def _lost(pid, name, err, dirfd, denied, errors):
    """A failed read of the optional file ``name``, classed by the race policy:
    True when the process vanished; else False with ``name`` added to
    ``denied`` or ``(pid, name, err)`` to ``errors`` (an absent file too)."""
    kind = classify(err)
    if kind == VANISHED and _gone(dirfd):
        return True
    if kind == DENIED:
        denied.append(name)
    else:
        errors.append((pid, name, err))
    return False


def _unchanged(before, pid, start_time, state, utime, stime, minflt, majflt, num_threads,
              rss_bytes, sample_no, recheck_every):
    """True when ``before`` (the process's record of the previous scan, or None)
    may lend its status and io fields to this scan's record: the same process
    (pid and start time), with the same stat fields that show it ran (state,
    utime, stime, minflt, majflt, num_threads, rss_bytes; the state an ASCII letter and
    rss_bytes below 2**64), whose status and io were read whole or denied last
    time (so an error or a malformed file is seen again), outside this scan's
    recheck slice: ``recheck_every`` > 0 and ``(pid + sample_no) %
    recheck_every != 0``. 0 turns the reuse off."""
    if before is None or recheck_every <= 0 or (pid + sample_no) % recheck_every == 0:
        return False
    if not (before["start_time"] == start_time and before["state"] == state and state < "\x80"
            and before["utime"] == utime and before["stime"] == stime
            and before["minflt"] == minflt and before["majflt"] == majflt
            and before["num_threads"] == num_threads and before["rss_bytes"] == rss_bytes
            and rss_bytes < 1 << 64):
        return False
    denied = before["denied"]
    return (("status" in denied or (before["uid"] is not None
                                    and before["voluntary_ctxt_switches"] is not None
                                    and before["nonvoluntary_ctxt_switches"] is not None))
            and ("io" in denied or (before["read_bytes"] is not None
                                    and before["write_bytes"] is not None)))


def scan(proc_root, pids, cache, sample_no=0, refresh_every=0, fd_mode=FD_SIZE,
         page_size=4096, read_cap=DEFAULT_READ_CAP, race_hook=None, previous=None,
         recheck_every=0):
    """Read the process table under ``proc_root`` (str or bytes).

    ``pids``: the pids to read, in that order, or None for every numeric entry
    of ``proc_root`` in ascending order.

    ``cache`` maps pid to ``(start_time, comm, uid, arg_start, arg_end, facts,
    facts_denied)``: the facts (a dict of cmdline, user, cgroup, oom_score_adj)
    of a process seen before, and the tuple of fact groups that were access
    denied. An entry is valid for a process with the same start time (so a
    reused pid is a new process), comm, uid and argument area (so an exec,
    even of the same program, or a setuid refreshes the facts).
    Entries are also refreshed when ``refresh_every`` > 0 and
    ``(pid + sample_no) % refresh_every == 0``, so a fact that changed without
    any of those (a cgroup move, a new oom_score_adj) is seen within
    ``refresh_every`` samples.

    ``previous`` is the ``seen`` map this function returned for the previous
    scan (pid to ``(stat bytes, record)``), or None. A process whose stat did
    not move since (see :func:`_unchanged`) is not read for status and io: its
    uid, context switches, read and write bytes and its status/io ``denied``
    entries are the previous record's. When moreover its stat is byte for
    byte the same, its fd count too, and its cache entry is valid and holds
    the facts of the previous record (see :func:`_same_record`), the previous record
    object itself is returned: nothing in it could differ. Every process is
    read whole at least once every ``recheck_every`` scans (the slice ``(pid
    + sample_no) % recheck_every == 0``), so a change that moves none of
    stat's fields (a few wake-ups shorter than a clock tick, a setuid between
    two scans) shows within that many scans; 0 reads every process whole
    every scan.

    Per process, through one descriptor of ``/proc/PID`` (so that every file
    describes the same process even if the pid is reused meanwhile): stat,
    status and io (unless the process is unchanged), then the fd count per
    ``fd_mode``; and for a process without a valid cache entry, cmdline,
    cgroup and oom_score_adj. ``race_hook``, when
    given, is called as ``race_hook(pid, name)`` before each of these reads; it
    exists for the tests of the races.

    Returns ``(records, new_cache, misses, vanished, malformed, errors, seen)``:

    * records: one dict per process with :data:`RECORD_KEYS`; ``denied`` lists
      the groups (status, io, fd, cmdline, cgroup, oom_score_adj) whose files
      were access denied, and their fields are None;
    * new_cache: the valid entries of ``cache`` for the processes read, by pid
      (entries of processes gone are dropped);
    * misses: ``(record, cmdline, cgroup, oom_score_adj, arg_start, arg_end)``
      for each record whose facts must be filled by the caller (and cached with
      the argument area), each file as bytes, or an errno int when it could not
      be read (classed by :mod:`hostdiag.parsers.procraces`);
    * vanished: processes skipped because they disappeared: the directory or
      ``stat`` is gone (ENOENT or ESRCH), or another file's read failed so and
      ``stat`` is gone too (the race policy of :mod:`hostdiag.parsers.procraces`);
    * malformed: ``{"stat": n, "status": n, "io": n}`` files that did not follow
      the grammar (a process with a malformed stat is skipped);
    * errors: ``(pid, name, errno)`` for every read that failed otherwise, an
      absent status, io or fd of a process still there included (EFBIG: larger
      than ``read_cap``); ``name`` "pid" is the directory, and a denied stat is
      reported here with the process skipped;
    * seen: pid to ``(stat bytes, record)`` for every record, the ``previous``
      of the next scan (a record whose facts the caller fills is the same
      object, filled).
    """
    if isinstance(proc_root, bytes):
        proc_root = os.fsdecode(proc_root)
    if previous is not None and not isinstance(previous, dict):
        raise TypeError("previous must be a dict or None")
    if pids is None:
        pids = list_pids(proc_root)
    buf = _Buffer(read_cap)
    records = []
    new_cache = {}
    misses = []
    vanished = 0
    malformed = {"stat": 0, "status": 0, "io": 0}
    errors = []
    seen = {}
    for pid in pids:
        try:
            dirfd = os.open("%s/%d" % (proc_root, pid),
                            os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            if classify(exc.errno) == VANISHED:
                vanished += 1
            else:
                errors.append((pid, "pid", exc.errno))
            continue
        try:
            before = previous.get(pid) if previous else None
            outcome = _scan_one(pid, dirfd, buf, cache, sample_no, refresh_every, fd_mode,
                                page_size, race_hook, malformed, errors, before, recheck_every)
        finally:
            os.close(dirfd)
        if outcome is None:
            vanished += 1
        elif outcome is not False:
            record, miss, stat_bytes = outcome
            records.append(record)
            if miss is None:
                new_cache[pid] = cache[pid]
            else:
                misses.append(miss)
            seen[pid] = before if before is not None and before[1] is record else (stat_bytes, record)
    return records, new_cache, misses, vanished, malformed, errors, seen


def _scan_one(pid, dirfd, buf, cache, sample_no, refresh_every, fd_mode, page_size,
              race_hook, malformed, errors, before, recheck_every):
    """``(record, miss, stat bytes)`` for one process; None when it vanished;
    False when it was skipped for another reason (recorded in ``malformed`` or
    ``errors``). ``before``: the process's ``(stat bytes, record)`` of the
    previous scan, or None."""
    if race_hook is not None:
        race_hook(pid, "stat")
    data = buf.read_at(dirfd, "stat")
    if isinstance(data, int):
        if classify(data) == VANISHED:
            return None
        errors.append((pid, "stat", data))
        return False
    stat, bad = parse_stat(data)
    if stat is None:
        malformed["stat"] += bad
        return False
    denied = []
    rss_bytes = stat["rss_pages"] * page_size
    stat_bytes = data
    previous_stat, before = before if before is not None else (None, None)

    quiet = _unchanged(before, pid, stat["start_time"], stat["state"], stat["utime"], stat["stime"],
                 stat["minflt"], stat["majflt"], stat["num_threads"], rss_bytes, sample_no,
                 recheck_every)
    if quiet:
        status = before
        io = before
        denied.extend(name for name in ("status", "io") if name in before["denied"])
    else:
        if race_hook is not None:
            race_hook(pid, "status")
        data = buf.read_at(dirfd, "status")
        if isinstance(data, int):
            if _lost(pid, "status", data, dirfd, denied, errors):
                return None
            status = {}
        else:
            status, bad = parse_status(data)
            malformed["status"] += bad

        if race_hook is not None:
            race_hook(pid, "io")
        data = buf.read_at(dirfd, "io")
        if isinstance(data, int):
            if _lost(pid, "io", data, dirfd, denied, errors):
                return None
            io = {}
        else:
            io, bad = parse_io(data)
            malformed["io"] += bad

    fd_count = None
    if fd_mode != FD_OFF:
        if race_hook is not None:
            race_hook(pid, "fd")
        fd_count, fd_error = _fd_count(dirfd, fd_mode)
        if fd_error is not None and _lost(pid, "fd", fd_error, dirfd, denied, errors):
            return None

    flags = stat["flags"]
    vsize = stat["vsize_bytes"]
    ppid = stat["ppid"]
    record = {
        "pid": pid,
        "ppid": ppid,
        "comm": stat["comm"],
        "cmdline": None,
        "state": stat["state"],
        "uid": status.get("uid"),
        "user": None,
        "start_time": stat["start_time"],
        "kernel_thread": kernel_thread(pid, ppid, flags, vsize, stat["state"]),
        "utime": stat["utime"],
        "stime": stat["stime"],
        "minflt": stat["minflt"],
        "majflt": stat["majflt"],
        "num_threads": stat["num_threads"],
        "nice": stat["nice"],
        "priority": stat["priority"],
        "rss_bytes": rss_bytes,
        "vsize_bytes": vsize,
        "delayacct_blkio_ticks": stat["delayacct_blkio_ticks"],
        "voluntary_ctxt_switches": status.get("voluntary_ctxt_switches"),
        "nonvoluntary_ctxt_switches": status.get("nonvoluntary_ctxt_switches"),
        "read_bytes": io.get("read_bytes"),
        "write_bytes": io.get("write_bytes"),
        "fd_count": fd_count,
        "cgroup": None,
        "oom_score_adj": None,
        "denied": denied,
    }

    entry = cache.get(pid)
    if (entry is not None and entry[0] == record["start_time"] and entry[1] == record["comm"]
            and entry[2] == record["uid"] and entry[3] == stat["arg_start"]
            and entry[4] == stat["arg_end"]
            and not (refresh_every > 0 and (pid + sample_no) % refresh_every == 0)):
        if quiet and _same_record(before, previous_stat, stat_bytes, fd_mode, fd_count, entry):
            return before, None, stat_bytes
        record.update(entry[5])
        denied.extend(entry[6])
        return record, None, stat_bytes

    facts = []
    for name in FACT_FILES:
        if race_hook is not None:
            race_hook(pid, name)
        data = buf.read_at(dirfd, name)
        if isinstance(data, int) and classify(data) == VANISHED and _gone(dirfd):
            return None
        facts.append(data)
    return (record, (record, facts[0], facts[1], facts[2], stat["arg_start"], stat["arg_end"]),
            stat_bytes)


def _same_record(before, previous_stat, stat_bytes, fd_mode, fd_count, entry):
    """True when the record being built would equal ``before``, the previous
    record of a process that :func:`_unchanged` found quiet and whose valid
    cache entry is ``entry``: its stat is byte for byte the previous one; its
    fd count was read (or not collected) alike; ``before`` holds the very fact
    objects of ``entry`` and the denied groups this record would get (the
    status and io ones it lends, then the entry's)."""
    if stat_bytes != previous_stat:
        return False
    if fd_mode == FD_OFF:
        if before["fd_count"] is not None:
            return False
    elif fd_count is None or fd_count != before["fd_count"]:
        return False
    facts = entry[5]
    if len(facts) != len(FACT_KEYS):
        return False
    for name in FACT_KEYS:
        if name not in facts or before[name] is not facts[name]:
            return False
    lent = [name for name in ("status", "io") if name in before["denied"]]
    return before["denied"] == lent + list(entry[6])
