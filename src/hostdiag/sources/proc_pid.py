"""/proc/PID/*: the process table, every pid under the root, sampled again and again.

What each per-pid file is read for, and how often (a sample reads each file of
a process at most once, through one descriptor of ``/proc/PID``, so that all of
them describe the same process even if its pid is reused meanwhile):

every sample
    ``stat``     identity and activity: ppid, comm, state, start time (the
                 identity with the pid), flags (kernel thread), minor and major
                 faults, utime and stime, priority, nice, threads, vsize, rss,
                 block I/O delay. The cheapest file that holds all of these.

when ``stat`` moved, and at least every ``recheck_every`` samples
    ``status``   the dearest file (the kernel formats ~55 lines; about 40 % of
                 a sample's cost here), read only for what no cheaper file
                 gives: the voluntary and involuntary context switches (nowhere
                 else outside the debug-only ``sched``). Its ``Uid:`` line comes
                 along for free and gives the effective uid.
    ``io``       read_bytes and write_bytes (storage I/O). Root may be denied it
                 (pid 1 here): the fields are None and "io" is listed in denied.

                 Most processes of a host sleep between two samples, and a
                 process that did not run has the same context switches and
                 I/O bytes as before. So a process whose ``stat`` shows the
                 same start time, state, utime, stime, faults, threads and rss
                 as in the previous sample keeps its previous uid, context
                 switches and I/O bytes (and its status/io denied entries)
                 without reading either file; a new process, a reused pid (new
                 start time) and a process whose status or io failed last time
                 are read whole. Runs shorter than a clock tick can add
                 context switches without moving utime or stime: every process
                 is read whole once every ``recheck_every`` samples (default
                 :data:`DEFAULT_RECHECK_EVERY`, one slice of the pids per sample),
                 so such a count is at most that many samples old.

every sample
    ``fd``       the open descriptor count, from one ``stat()`` of the
                 ``/proc/PID/fd`` directory, whose size is the count on Linux
                 6.2 and later; not collected on older kernels unless asked
                 (listing the directory costs about as much as status).

once per process life, cached by identity
    ``cmdline``        the arguments, redacted (docs/redaction.md);
    ``cgroup``         the cgroup path (see ``parse_cgroup`` for the choice
                       between v1 controllers and the v2 tree);
    ``oom_score_adj``  the OOM killer adjustment;
    and the user name of the uid.

A process whose ``stat`` line is byte for byte the previous one, with the same
fd count and valid cached facts, is the previous sample's record object itself
(nothing in it could differ): an idle process costs its reads and no new record,
and the delta encoder compares it by identity.

Not read: ``statm`` (stat has vsize and rss, which are statm's first two
columns), ``sched``/``schedstat``, ``fd/*`` links, ``environ``.

The cache is keyed by pid and holds the facts with what validates them: start
time, comm, uid and the argument area's addresses (stat fields 48-49). An entry
serves a process with the same four: a reused pid is a new process, and an
exec (new comm, or the same program with its stack placed anew) or a setuid
refreshes the facts. Facts
that change without any of these (a cgroup move, a new oom_score_adj, an
argument list rewritten in place) are refreshed every ``refresh_every``
samples, one slice of the pids per sample so the cost stays flat. Entries of
pids gone are dropped at each sample.

Races (STYLE.md 6), by the one policy of :mod:`hostdiag.parsers.procraces`: a
process whose ``stat`` is gone (ENOENT or ESRCH) is skipped and counted in
``vanished``; a file that may not be read (EACCES, EPERM) leaves its fields None
and its group in the process's ``denied``; an absent optional file (no io,
cgroup or oom_score_adj on that kernel or in that recorded tree) leaves its
fields None; a zombie is listed (state Z; its cmdline is empty). Every failure
but a denied one is one entry per file and error in the collection's problems,
counted, repeated in each sample while the process is listed.
"""

import errno
import gc
import os
import pwd

from hostdiag.parsers import live_procpid, procpid
from hostdiag.parsers.procraces import DENIED, REQUIRED_FILE, classify
from hostdiag.sources.hostroot import MALFORMED, TOO_LARGE, error_kind

SOURCE = "processes"
# Parsed facts are remembered by their raw bytes (forked workers share one
# command line); the memo is emptied every refresh cycle or at this size.
MEMO_ENTRIES = 8192
# Samples between two reads of a process's cached facts.
DEFAULT_REFRESH_EVERY = 60
# Samples between two reads of status and io of a process whose stat did not
# move: with the agent's tables every 5 s, a minute. Each sample reads 1/12 of
# the idle processes' status and io (about 1 ms for 1,000 processes).
DEFAULT_RECHECK_EVERY = 12
FD_COUNTS = ("auto", "size", "list", "off")


class ProcessTable:
    """The processes section of a snapshot, for one :class:`HostRoot`.

    ``fd_counts``: "auto" (the ``/proc/PID/fd`` size on a live Linux 6.2+ root,
    else not collected), "size", "list" (count the directory's entries; any
    kernel, costs about as much as status) or "off". ``parsers`` is the twin
    that scans (default: the live one, :data:`hostdiag.parsers.live_procpid`); tests
    and benchmarks pass either twin to compare them.
    """

    def __init__(self, root, fd_counts="auto", refresh_every=DEFAULT_REFRESH_EVERY,
                 page_size=None, parsers=live_procpid, recheck_every=DEFAULT_RECHECK_EVERY):
        if fd_counts not in FD_COUNTS:
            raise ValueError("fd_counts must be one of %s" % ", ".join(FD_COUNTS))
        self.root = root
        self.parsers = parsers
        self.refresh_every = refresh_every
        self.recheck_every = recheck_every
        self.page_size = page_size or os.sysconf("SC_PAGE_SIZE")
        self.fd_mode = self._fd_mode(fd_counts)
        self.samples = 0
        self._cache = {}
        self._users = {}
        self._passwd = None
        self._memo = {}
        # pid -> (stat bytes, record) of the previous sample: what an
        # unchanged process reuses (the records are the ones the previous
        # snapshot holds: no copy; the stat lines are about 300 bytes each).
        self._previous = {}
        # pid -> ((fact file, errno), ...): facts of cached processes that could
        # not be read, reported again in every sample the cache serves them.
        self._fact_errors = {}

    def _fd_mode(self, fd_counts):
        if fd_counts == "off":
            return procpid.FD_OFF
        if fd_counts == "list":
            return procpid.FD_LIST
        if fd_counts == "size":
            return procpid.FD_SIZE
        # This process has descriptors open, so a size of 0 means a kernel
        # before 6.2, where the size of /proc/PID/fd is always 0.
        if self.root.live and os.stat(self.root.proc("self", "fd")).st_size > 0:
            return procpid.FD_SIZE
        return procpid.FD_OFF

    def scan(self, problems, pids=None, race_hook=None):
        """One sample of the process table as plain data::

            processes  [record] in pid order; a record has the keys of
                       procpid.RECORD_KEYS: pid, ppid, comm, cmdline (list of
                       redacted arguments), state, uid (effective), user,
                       start_time (clock ticks after boot), kernel_thread,
                       utime, stime (clock ticks), minflt, majflt, num_threads,
                       nice, priority, rss_bytes, vsize_bytes,
                       delayacct_blkio_ticks, voluntary_ctxt_switches,
                       nonvoluntary_ctxt_switches, read_bytes, write_bytes
                       (bytes of storage I/O), fd_count, cgroup, oom_score_adj,
                       denied (groups access denied: status, io, fd, cmdline,
                       cgroup, oom_score_adj); a field not read is None.
                       Records are read-only: they share their cmdline
                       lists, and a process that did not change is the
                       previous sample's record object.
            counts     {"total": processes, "threads": sum of num_threads,
                        "by_state": {state letter: processes}}
            vanished   processes that disappeared while they were read
            denied     processes with a group denied, or not readable at all

        ``pids`` restricts the sample to those pids, in that order (default:
        every pid under the root); ``race_hook`` is passed to the scanner (tests).
        """
        if self.refresh_every > 0 and self.samples % self.refresh_every == 0:
            self._users = {}
            self._passwd = None
            self._memo = {}
        # The scan allocates two containers per process and frees none, so
        # the cyclic collector would run a dozen times over what it just made
        # (and over every other object of the agent): it runs once afterwards.
        collecting = gc.isenabled()
        gc.disable()
        try:
            records, cache, misses, vanished, malformed, errors, seen = self.parsers.scan(
                self.root.proc_root, pids, self._cache, self.samples, self.refresh_every,
                self.fd_mode, self.page_size, self.root.read_cap, race_hook, self._previous,
                self.recheck_every)
        except OSError as exc:
            problems.add(SOURCE, self.root.proc_root, error_kind(exc), exc.strerror or str(exc))
            return None
        finally:
            if collecting:
                gc.enable()
        self.samples += 1
        fact_errors = self._fact_errors
        for pid in cache:
            errors.extend((pid, name, err) for name, err in fact_errors.get(pid, ()))
        for miss in misses:
            self._fill_facts(cache, miss, errors, problems)
        self._cache = cache
        self._previous = seen
        if fact_errors:
            # Only the processes cached now keep their entries.
            self._fact_errors = {pid: found for pid, found in fact_errors.items() if pid in cache}

        denied = 0
        threads = 0
        by_state = {}
        for record in records:
            if record["denied"]:
                denied += 1
            threads += record["num_threads"]
            state = record["state"]
            by_state[state] = by_state.get(state, 0) + 1
        for file, count in malformed.items():
            if count:
                problems.add(SOURCE, self.root.proc("*", file), MALFORMED,
                             "%d malformed file(s)" % count, count)
        denied += self._record_errors(errors, problems)
        return {
            "processes": records,
            "counts": {"total": len(records), "threads": threads, "by_state": by_state},
            "vanished": vanished,
            "denied": denied,
        }

    def _fill_facts(self, cache, miss, errors, problems):
        """Parse a miss's fact files into its record and cache them; a fact file
        that could not be read is classed by the race policy (procraces): denied,
        or one more ``(pid, file, errno)`` in ``errors``."""
        record, cmdline, cgroup, oom_score_adj, arg_start, arg_end = miss
        pid = record["pid"]
        denied = []
        failed = []
        parsers = self.parsers
        facts = {
            "cmdline": self._fact(pid, "cmdline", cmdline, parsers.parse_cmdline, denied,
                                  failed, problems),
            "user": self._user(record["uid"], problems),
            "cgroup": self._fact(pid, "cgroup", cgroup, parsers.parse_cgroup, denied, failed,
                                 problems),
            "oom_score_adj": self._fact(pid, "oom_score_adj", oom_score_adj,
                                        parsers.parse_oom_score_adj, denied, failed, problems),
        }
        record.update(facts)
        record["denied"].extend(denied)
        cache[pid] = (record["start_time"], record["comm"], record["uid"], arg_start, arg_end,
                      facts, tuple(denied))
        if failed:
            self._fact_errors[pid] = tuple(failed)
            errors.extend((pid, name, err) for name, err in failed)
        else:
            self._fact_errors.pop(pid, None)

    def _fact(self, pid, name, data, parser, denied, failed, problems):
        if isinstance(data, int):
            if classify(data) == DENIED:
                denied.append(name)
            else:
                failed.append((name, data))
            return None
        key = (name, data)
        try:
            value, malformed = self._memo[key]
        except KeyError:
            value, malformed = parser(data)
            if len(self._memo) >= MEMO_ENTRIES:
                self._memo = {}
            self._memo[key] = value, malformed
        if malformed:
            problems.add(SOURCE, self.root.proc(str(pid), name), MALFORMED,
                         "%d malformed line(s)" % malformed, malformed)
        return value

    def _record_errors(self, errors, problems):
        """One problems entry per (file, errno); returns how many processes were
        not read at all because access was denied."""
        grouped = {}
        unreadable = 0
        for pid, name, err in errors:
            if name in ("pid", REQUIRED_FILE) and classify(err) == DENIED:
                unreadable += 1
            grouped.setdefault((name, err), []).append(pid)
        for (name, err), pids in grouped.items():
            kind = TOO_LARGE if err == errno.EFBIG else error_kind(OSError(err, ""))
            path = self.root.proc(str(pids[0]), "" if name == "pid" else name)
            problems.add(SOURCE, path, kind, "%s (%d process(es), first pid %d)"
                         % (os.strerror(err), len(pids), pids[0]), len(pids))
        return unreadable

    def _user(self, uid, problems):
        """The user name of ``uid`` on the host, or None. A live root asks the
        name service (pwd); a recorded root reads its own etc/passwd."""
        if uid is None:
            return None
        try:
            return self._users[uid]
        except KeyError:
            pass
        if self.root.live:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = None
        else:
            if self._passwd is None:
                self._passwd = self._read_passwd(problems)
            name = self._passwd.get(uid)
        self._users[uid] = name
        return name

    def _read_passwd(self, problems):
        users = {}
        data = problems.read(self.root, SOURCE, self.root.host("etc", "passwd"))
        for line in (data or b"").split(b"\n"):
            fields = line.split(b":")
            if len(fields) >= 3 and fields[2].isdigit():
                users.setdefault(int(fields[2]), fields[0].decode("utf-8", "replace"))
        return users
