"""/proc/PID/limits: the resource limits of the processes that matter, cached
with their identity.

The findings judge two limits: a process's open descriptors against its own
RLIMIT_NOFILE, and a user's tasks against RLIMIT_NPROC. Reading the file of
every process each sample would cost as much as a second ``stat``; so
:class:`LimitsReader` reads it only for

* the ``FD_PROCESSES`` processes with the most descriptors, at
  ``MIN_FDS`` or more (below that no usual limit is near);
* for each of the ``USERS`` users (not root, which RLIMIT_NPROC does not
  bind) with the most tasks, at ``MIN_USER_TASKS`` or more, its process with
  the most threads;

and keeps what it read by (pid, start time) for ``refresh_every`` samples
(a limit changes only by prlimit(2) or a new process), so that a sample
reads a handful of files at most. The start time is read again from ``stat``
after ``limits``: a pid reused between the scan and the read is not given
the limits of another process.

The result goes into the processes section as ``limits``:
``{str(pid): {"start_time", "nofile": [soft, hard], "nproc": [soft, hard]}}``
(None for unlimited).
"""

from hostdiag.parsers.limits import parse_limits, stat_start_time
from hostdiag.sources.hostroot import MALFORMED, MISSING, SourceError

SOURCE = "processes"
FD_PROCESSES = 16
MIN_FDS = 32
USERS = 8
MIN_USER_TASKS = 32
DEFAULT_REFRESH_EVERY = 60


def _chosen(records):
    """The records whose limits are read: the most descriptors, and each
    busiest user's process with the most threads (see the module doc)."""
    with_fds = [r for r in records if isinstance(r.get("fd_count"), int) and r["fd_count"] >= MIN_FDS]
    with_fds.sort(key=lambda r: (-r["fd_count"], r["pid"]))
    chosen = {r["pid"]: r for r in with_fds[:FD_PROCESSES]}
    tasks, busiest = {}, {}
    for record in records:
        uid = record.get("uid")
        if not isinstance(uid, int) or uid == 0:
            continue
        threads = record.get("num_threads") or 1
        tasks[uid] = tasks.get(uid, 0) + threads
        best = busiest.get(uid)
        if best is None or (threads, -record["pid"]) > ((best.get("num_threads") or 1), -best["pid"]):
            busiest[uid] = record
    users = sorted((uid for uid, count in tasks.items() if count >= MIN_USER_TASKS),
                   key=lambda uid: (-tasks[uid], uid))[:USERS]
    for uid in users:
        chosen.setdefault(busiest[uid]["pid"], busiest[uid])
    return list(chosen.values())


class LimitsReader:
    """The ``limits`` of one process table's samples (see the module doc)."""

    def __init__(self, root, refresh_every=DEFAULT_REFRESH_EVERY):
        self.root = root
        self.refresh_every = max(1, refresh_every)
        self.samples = 0
        # (pid, start time) -> (sample read at, {"nofile", "nproc"})
        self._cache = {}

    def read(self, records, problems):
        """``{str(pid): limits}`` for the chosen processes of ``records``
        (process records of one scan)."""
        found = {}
        cache = {}
        for record in _chosen(records):
            key = (record["pid"], record.get("start_time"))
            cached = self._cache.get(key)
            if cached is None or self.samples - cached[0] >= self.refresh_every:
                limits = self._read_one(record, problems)
                cached = None if limits is None else (self.samples, limits)
            if cached is not None:
                cache[key] = cached
                found[str(record["pid"])] = dict(cached[1], start_time=record.get("start_time"))
        self._cache = cache
        self.samples += 1
        return found

    def _read_one(self, record, problems):
        pid = str(record["pid"])
        try:
            data = self.root.read_proc(pid, "limits")
            stat = self.root.read_proc(pid, "stat")
        except SourceError as exc:
            # A process gone since the scan is no error; anything else is.
            if exc.kind != MISSING:
                problems.add(SOURCE, exc.path, exc.kind, exc.message)
            return None
        if stat_start_time(stat) != record.get("start_time"):
            return None
        limits, malformed = parse_limits(data)
        if malformed:
            problems.add(SOURCE, self.root.proc(pid, "limits"), MALFORMED,
                         "%d malformed line(s) skipped" % malformed, malformed)
        return {"nofile": limits.get("nofile"), "nproc": limits.get("nproc")}
