"""Network namespaces: which exist, and the TCP/UDP counters and a socket
summary of each one the sample visits.

The host's /proc/net and sock_diag describe one network namespace: a process
in another one (a container) is invisible to them, its retransmits and listen
overflows too. :class:`NetnsTable` finds the others and reads them.

Discovery, every table sample:

* the namespace of every process of the process table (kernel threads aside:
  they all live in the initial one): one ``stat()`` of ``/proc/PID/ns/net``,
  whose inode is the namespace's; processes are grouped by it;
* the names under ``/run/netns`` (``ip netns add``): each is a bind mount of
  a namespace, whose ``stat()`` gives the same inode; a file there that is
  not a namespace (a leftover of a crashed ``ip``) is skipped;
* the host's namespace is the one the network and sockets sections describe,
  ``/proc/self/ns/net`` under the root: the agent's own (PID 1's when the
  agent runs in the host's namespace, as its unit does).

Reading a visited namespace:

* the counters of :data:`COUNTERS` from ``/proc/PID/net/snmp`` and ``netstat``
  of a process inside it (checked to be still inside it after the read);
  for a namespace with a name and no process (or whose processes all left),
  a short-lived thread enters it (``setns``), reads
  ``/proc/thread-self/net/*`` and ends;
* its sockets with sock_diag, over a NETLINK_SOCK_DIAG socket opened inside
  it (the TCP dumps of a family its ``sockstat`` shows no socket of are left
  out: :func:`empty_dumps`): a short-lived thread enters the namespace, opens and binds the socket,
  and ends; the socket stays bound to that namespace. One socket is kept per
  namespace visited in the sample and closed when a sample no longer
  visits it (so the agent holds at most ``max_netns`` of them). The
  section's summary (:func:`socket_summary`) keeps counts, the fullest
  listeners and the connections with the most retransmits, not the rows.
  Without the running kernel (a recorded tree, a host /proc mounted in a
  container), or when the socket cannot be opened, the /proc/PID/net/tcp*
  files of a process inside are read instead.

Cost and bounds: each visited namespace costs four small file reads and one
sock_diag dump of each kind. A TCP dump walks the kernel's whole TCP hash
table, which all namespaces share (262,144 buckets here, with every other
namespace's sockets in them): a few milliseconds for a namespace with TCP
sockets, under one without (benchmarks/README.md, "Network namespaces").
The discovery costs one ``stat()`` per process. At most ``max_netns`` namespaces besides the host's are visited
per sample (:data:`DEFAULT_MAX_NETNS`, the agent's ``agent.max_netns``).
With more, a window of ``max_netns`` namespaces (in inode order) moves by
half its size each sample, so that every namespace is visited in turn, each
time in two consecutive samples (its rates need both); one that is not in
the window is not in the section. The cost grows with the namespaces
visited, never past the limit.

The section::

    {"limits": {"max_netns": n},
     "total": namespaces found besides the host's,
     "visited": how many of them this sample read,
     "denied": processes whose namespace could not be seen (access denied),
     "namespaces": [the host's namespace, then each visited one: records.NETNS]}
"""

import bisect
import collections
import ctypes
import os
import socket
import threading

from hostdiag.parsers import live_sockdiag, parse_sockstat, parse_twoline
from hostdiag.parsers.sockdiag import ROW_FIELDS
from hostdiag.sources.hostroot import ACCESS_DENIED, MALFORMED, MISSING, UNAVAILABLE, SourceError, error_kind
from hostdiag.sources.problems import Problems
from hostdiag.sources.sock_diag import RECV_TIMEOUT_S, SocketTable

SOURCE = "netns"

DEFAULT_MAX_NETNS = 16
# Pids kept in a namespace's record (the lowest): enough to find its processes.
PIDS_KEPT = 4
# Listeners kept in a namespace's socket summary, fullest accept queue first.
LISTENERS_KEPT = 8
# Connections kept in a namespace's socket summary, most retransmits first.
RETRANSMITTING_KEPT = 5

# The counters kept per namespace: {file: {group: (counter, ...)}}, those the
# rates and findings use and a few that explain them, not the ~150 of the two
# files (a namespace record stays near 1 KiB).
COUNTERS = {
    "snmp": {
        "Tcp": ("ActiveOpens", "PassiveOpens", "AttemptFails", "EstabResets", "CurrEstab",
                "InSegs", "OutSegs", "RetransSegs", "InErrs", "OutRsts"),
        "Udp": ("InDatagrams", "NoPorts", "InErrors", "OutDatagrams", "RcvbufErrors", "SndbufErrors"),
    },
    "netstat": {
        "TcpExt": ("ListenOverflows", "ListenDrops", "TCPTimeouts", "TCPSynRetrans", "TCPLostRetransmit",
                   "TCPBacklogDrop", "TCPRcvQDrop", "TCPAbortOnTimeout"),
    },
}

# The files read per namespace: the counters, and sockstat for its socket counts.
_FILES = ("snmp", "netstat", "sockstat", "sockstat6")

CLONE_NEWNET = 0x40000000
NETLINK_SOCK_DIAG = 4

_RETRANS = ROW_FIELDS.index("total_retrans")
_ROW_KEPT = ("state", "local", "local_port", "remote", "remote_port", "total_retrans", "rtt", "inode")
_ROW_COLS = tuple(ROW_FIELDS.index(name) for name in _ROW_KEPT)


def _setns_call():
    """``setns(fd, CLONE_NEWNET)`` for the calling thread: os.setns from
    Python 3.12, else libc's through ctypes."""
    if hasattr(os, "setns"):
        return lambda fd: os.setns(fd, CLONE_NEWNET)
    libc = ctypes.CDLL(None, use_errno=True)

    def setns(fd):
        if libc.setns(fd, CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
    return setns


_setns = _setns_call()


def inside(ns_path, inode, work):
    """``work()`` run by a new thread that has entered the network namespace
    at ``ns_path`` (a /proc/PID/ns/net link or a /run/netns file) after
    checking that it is the namespace ``inode``; its result, or its
    exception raised here. The thread ends with ``work``: the namespace of
    every other thread is untouched. Raises SourceError when the namespace
    cannot be entered."""
    try:
        fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SourceError(error_kind(exc), ns_path, exc.strerror or str(exc)) from None
    outcome = {}

    def run():
        try:
            _setns(fd)
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed back to the calling thread as it is
            outcome["error"] = exc

    try:
        if os.fstat(fd).st_ino != inode:
            raise SourceError(MISSING, ns_path, "no longer the namespace %d" % inode)
        thread = threading.Thread(target=run, name="hostdiag-netns", daemon=True)
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    error = outcome.get("error")
    if isinstance(error, OSError):
        raise SourceError(error_kind(error), ns_path, "inside the namespace: %s"
                          % (error.strerror or error)) from None
    if error is not None:
        raise error
    return outcome["value"]


def _sock_diag_socket():
    """A NETLINK_SOCK_DIAG socket bound in the calling thread's namespace."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
    try:
        sock.bind((0, 0))
        sock.settimeout(RECV_TIMEOUT_S)
    except OSError:
        sock.close()
        raise
    return sock


def _kept_counters(parsed, wanted):
    """The groups and counters of ``wanted`` out of a parsed snmp/netstat;
    a counter this kernel lacks is None."""
    if parsed is None:
        return None
    return {group: {name: parsed.get(group, {}).get(name) for name in names} for group, names in wanted.items()}


def _read_files(root, directory):
    """The bytes of :data:`_FILES` in ``directory`` (a /proc/PID/net); None
    for sockstat6 on a kernel without IPv6. Raises SourceError."""
    files = [root.read(os.path.join(directory, name)) for name in _FILES[:-1]]
    try:
        files.append(root.read(os.path.join(directory, _FILES[-1])))
    except SourceError as exc:
        if exc.kind != MISSING:
            raise
        files.append(None)
    return files


def empty_dumps(sockstat, sockstat6):
    """The TCP sock_diag requests that would find nothing in a namespace,
    by its sockstat counts (parsed): ``tcp4`` and ``tcp4-listen`` without an
    IPv4 TCP socket in use and without a socket in TIME_WAIT, ``tcp6`` and
    ``tcp6-listen`` likewise for IPv6. A count that is missing skips
    nothing. Each TCP dump walks the kernel's whole TCP hash table (shared
    by every namespace: about 1 ms with 262,144 buckets), so a namespace
    without TCP sockets costs little."""
    tw = _get_count(sockstat, "TCP", "tw")
    skip = set()
    for family, parsed, group in (("tcp4", sockstat, "TCP"), ("tcp6", sockstat6, "TCP6")):
        if tw == 0 and _get_count(parsed, group, "inuse") == 0:
            skip.update((family, family + "-listen"))
    return frozenset(skip)


def _get_count(parsed, group, name):
    value = parsed.get(group, {}).get(name) if isinstance(parsed, dict) else None
    return value if isinstance(value, int) else None


def _fill(listener):
    """How full a listener's accept queue is, for ordering: (fraction, in use)."""
    backlog, limit = listener.get("backlog") or 0, listener.get("backlog_max")
    return (backlog / limit if limit else 0.0, backlog)


def socket_summary(section):
    """A namespace's sockets section (:mod:`hostdiag.sources.sock_diag`)
    reduced to what a namespace record carries: counts, the
    :data:`LISTENERS_KEPT` fullest listeners (records.LISTENER), the
    :data:`RETRANSMITTING_KEPT` connections with the most retransmits, and
    the UDP drops summed over the UDP sockets the section kept. None for
    None."""
    if section is None:
        return None
    rows = section["tcp_table"]["rows"]
    (ranked,) = live_sockdiag.top_rows(rows, (_RETRANS,), RETRANSMITTING_KEPT)
    listeners = sorted(section["listeners"], key=_fill, reverse=True)
    unix = section.get("unix")
    return {
        "source": section["source"],
        "tcp_total": section["tcp_total"],
        "tcp_states": section["tcp_states"],
        "listeners": listeners[:LISTENERS_KEPT],
        "listeners_total": len(listeners),
        "retransmitting": [dict(zip(_ROW_KEPT, (row[i] for i in _ROW_COLS))) for row in ranked],
        "udp_total": section["udp_total"],
        "udp_drops": sum(u["drops"] for u in section["udp"] if isinstance(u.get("drops"), int)),
        "unix_total": unix.get("total") if isinstance(unix, dict) else None,
    }


class _Seen:
    """One namespace found by the discovery: its processes and its name."""

    __slots__ = ("pids", "cgroups", "name")

    def __init__(self):
        self.pids = []
        self.cgroups = collections.Counter()
        self.name = None


class NetnsTable:
    """The netns section of one :class:`HostRoot`, sample after sample (see
    the module docstring); keeps the window's place and one sock_diag socket
    per namespace visited. Use as a context manager or call :meth:`close`."""

    def __init__(self, root, max_netns=DEFAULT_MAX_NETNS, netlink=True):
        if max_netns < 2:
            raise ValueError("max_netns must be at least 2 (a namespace's rates need two visits), got %r"
                             % (max_netns,))
        self.root = root
        self.max_netns = max_netns
        # Entering a namespace (setns) needs the running kernel's own roots.
        self.live = root.live
        self.netlink = bool(netlink) and root.live
        self._cursor = 0            # the inode the next window starts at (or after)
        self._sockets = {}          # inode -> SocketTable open inside it

    @property
    def open_sockets(self):
        """The inodes of the namespaces this table holds a sock_diag socket in, sorted."""
        return sorted(inode for inode, table in self._sockets.items() if table.is_open)

    def close(self):
        for table in self._sockets.values():
            table.close()
        self._sockets = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- discovery -----------------------------------------------------------------

    def _discover(self, processes, problems):
        """(host inode, nsfs device, {inode: _Seen}, processes denied)."""
        root = self.root
        try:
            host = os.stat(root.proc("self", "ns", "net"))
        except OSError as exc:
            raise SourceError(error_kind(exc), root.proc("self", "ns", "net"), exc.strerror or str(exc)) from None
        found = {}
        denied = 0
        for record in processes:
            if record.get("kernel_thread"):
                continue
            pid = record.get("pid")
            try:
                inode = os.stat(root.proc(str(pid), "ns", "net")).st_ino
            except OSError as exc:
                kind = error_kind(exc)
                if kind == ACCESS_DENIED:
                    denied += 1
                elif kind != MISSING:       # gone since the process scan: not an error
                    problems.add(SOURCE, root.proc(str(pid), "ns", "net"), kind, exc.strerror or str(exc))
                continue
            seen = found.get(inode)
            if seen is None:
                seen = found[inode] = _Seen()
            seen.pids.append(pid)
            seen.cgroups[record.get("cgroup")] += 1
        self._names(host.st_dev, found, problems)
        return host.st_ino, found, denied

    def _names(self, nsfs_dev, found, problems):
        """Add the /run/netns names to ``found`` (a namespace only named there too)."""
        directory = self.root.host("run", "netns")
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except FileNotFoundError:
            return
        except OSError as exc:
            problems.add(SOURCE, directory, error_kind(exc), exc.strerror or str(exc))
            return
        for entry in entries:
            try:
                st = os.stat(entry.path)
            except OSError as exc:
                if error_kind(exc) != MISSING:
                    problems.add(SOURCE, entry.path, error_kind(exc), exc.strerror or str(exc))
                continue
            if st.st_dev != nsfs_dev:
                continue        # a plain file: the namespace is not mounted there
            seen = found.get(st.st_ino)
            if seen is None:
                seen = found[st.st_ino] = _Seen()
            if seen.name is None:
                seen.name = entry.name

    def _window(self, others):
        """The inodes to visit among ``others`` (sorted), and where the next
        window starts."""
        limit = self.max_netns
        if len(others) <= limit:
            return others
        start = bisect.bisect_left(others, self._cursor) % len(others)
        self._cursor = others[(start + limit // 2) % len(others)]
        return [others[(start + i) % len(others)] for i in range(limit)]

    # --- one sample ----------------------------------------------------------------

    def collect(self, problems, processes):
        """The netns section (module docstring) given the processes section of
        the same sample; None without one (the discovery needs it) or when
        the host's own namespace cannot be seen, with an entry in ``problems``."""
        if not isinstance(processes, dict):
            problems.add(SOURCE, "", UNAVAILABLE, "no process table to find the namespaces from")
            self.close()
            return None
        try:
            host, found, denied = self._discover(processes.get("processes") or (), problems)
        except SourceError as exc:
            problems.add(SOURCE, exc.path, exc.kind, exc.message)
            self.close()
            return None
        others = sorted(inode for inode in found if inode != host)
        visit = self._window(others)
        for inode in set(self._sockets) - set(visit):
            self._sockets.pop(inode).close()
        host_seen = found.get(host) or _Seen()
        namespaces = [self._record(host, host_seen, True)]
        for inode in visit:
            record = self._record(inode, found[inode], False)
            self._read(record, found[inode], problems)
            namespaces.append(record)
        return {"limits": {"max_netns": self.max_netns}, "total": len(others), "visited": len(visit),
                "denied": denied, "namespaces": namespaces}

    @staticmethod
    def _record(inode, seen, host):
        cgroup = seen.cgroups.most_common(1)[0][0] if seen.cgroups else None
        return {"inode": inode, "name": seen.name, "host": host, "processes": len(seen.pids),
                "pids": sorted(seen.pids)[:PIDS_KEPT], "cgroup": cgroup,
                "snmp": None, "netstat": None, "sockets": None}

    def _ns_paths(self, inode, seen):
        """Paths that enter the namespace: each process's link, then its name."""
        paths = [self.root.proc(str(pid), "ns", "net") for pid in seen.pids]
        if seen.name is not None:
            paths.append(self.root.host("run", "netns", seen.name))
        return paths

    def _read(self, record, seen, problems):
        """Fill ``record``'s counters and sockets."""
        inode = record["inode"]
        pid, empty = self._counters_by_pid(record, seen, problems)
        if pid is None and self.live:
            empty = self._counters_inside(record, seen, problems)
        if record["snmp"] is None and record["netstat"] is None:
            problems.add(SOURCE, "netns:%d" % inode, UNAVAILABLE,
                         "no process inside it or way in to read its counters from")
        record["sockets"] = self._sockets_of(inode, seen, pid, empty or frozenset(), problems)

    def _counters_by_pid(self, record, seen, problems):
        """Read the counters through the first process still inside: (its pid,
        the dumps to skip), or (None, None)."""
        root = self.root
        for pid in seen.pids:
            link = root.proc(str(pid), "ns", "net")
            try:
                files = _read_files(root, root.proc(str(pid), "net"))
                still = os.stat(link).st_ino == record["inode"]
            except SourceError as exc:
                if exc.kind != MISSING:
                    problems.add(SOURCE, exc.path, exc.kind, exc.message)
                continue
            except OSError:
                continue        # the process left between the reads
            if still:
                return pid, self._parse(record, files, problems)
        return None, None

    def _counters_inside(self, record, seen, problems):
        """Read the counters from a thread inside the namespace: the dumps to
        skip, or None."""
        def work():
            return _read_files(self.root, self.root.proc("thread-self", "net"))

        for path in self._ns_paths(record["inode"], seen):
            try:
                files = inside(path, record["inode"], work)
            except SourceError as exc:
                if exc.kind != MISSING:
                    problems.add(SOURCE, exc.path, exc.kind, exc.message)
                continue
            return self._parse(record, files, problems)
        return None

    @staticmethod
    def _parse(record, files, problems):
        """Put the kept counters of snmp and netstat (the bytes of :data:`_FILES`)
        in ``record``; the TCP dumps its sockstat files show to be empty."""
        parsed = {}
        for key, data, parser in zip(_FILES, files, (parse_twoline, parse_twoline, parse_sockstat, parse_sockstat)):
            parsed[key], malformed = parser(data) if data is not None else (None, 0)
            if malformed:
                problems.add(SOURCE, "netns:%d/%s" % (record["inode"], key), MALFORMED,
                             "%d malformed line(s) skipped" % malformed, malformed)
        for key in COUNTERS:
            record[key] = _kept_counters(parsed[key], COUNTERS[key])
        return empty_dumps(parsed["sockstat"], parsed["sockstat6"])

    def _sockets_of(self, inode, seen, pid, skip, problems):
        """The socket summary of namespace ``inode``, through its cached
        socket table (opened on first use), leaving out the dumps ``skip``."""
        table = self._sockets.get(inode)
        if table is None:
            table = SocketTable(self.root, netlink=self.netlink, detail_per_rank=0,
                                opener=lambda: self._open_socket(inode, seen))
            self._sockets[inode] = table
        # The fallback reads a process inside; the opener may need a new way
        # in when the process it used is gone (the table reopens after a failure).
        table.net_dir = self.root.proc(str(pid), "net") if pid is not None else None
        table.opener = lambda: self._open_socket(inode, seen)
        table.skip = skip
        # The table's entries do not say which namespace: relabelled here.
        own = Problems()
        summary = socket_summary(table.collect(own))
        for entry in own.entries:
            problems.add(SOURCE, entry["path"], entry["kind"], "netns %d: %s" % (inode, entry["message"]),
                         entry["count"])
        return summary

    def _open_socket(self, inode, seen):
        """A sock_diag socket bound inside namespace ``inode``, through the
        first way in that works."""
        failure = SourceError(MISSING, "netns:%d" % inode, "no way into the namespace")
        for path in self._ns_paths(inode, seen):
            try:
                return inside(path, inode, _sock_diag_socket)
            except SourceError as exc:
                failure = exc
        raise failure

