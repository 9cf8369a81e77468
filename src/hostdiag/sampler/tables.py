"""The process, socket and cgroup tables of a snapshot, next to
:mod:`hostdiag.sampler.system` (:class:`hostdiag.sampler.Sampler` puts the two together).

:class:`TableCollector` holds one :class:`~hostdiag.sources.proc_pid.ProcessTable`,
one :class:`~hostdiag.sources.sock_diag.SocketTable`, one
:class:`~hostdiag.sources.cgroups.CgroupTable` and one
:class:`~hostdiag.sources.workloads.WorkloadResolver` for a host root and keeps
them between samples: the process table's cache of per-process facts, the
socket table's open sock_diag socket (the socket table itself chooses netlink
for a live root and /proc/net/tcp* otherwise), the cgroup hierarchies found
and the workload names read from disk.

Timing: a snapshot's rates are dated by ``meta.mono_ns``, taken when the system
collection starts. :meth:`TableCollector.collect` is meant to run right
before that collection, and it scans the processes last, so that the process counters
(CPU ticks, I/O bytes, faults) are read just before ``meta.mono_ns`` in both
snapshots of a pair: the scan's offset from it is the same twice and cancels
out of the per-process rates. The socket dump comes first, then the cgroup
walk; retransmits and cgroup rates per second are less sensitive to a few
milliseconds (the cgroup walk of a few hundred groups takes tens of them, the
same in both samples of a pair).

The processes section carries, beside the table's own keys, ``limits``: the
resource limits of the processes that matter
(:mod:`hostdiag.sources.proc_pid_limits`).

The cgroups section carries, beside the table's own keys, ``workloads``:
``{cgroup path: workload}`` (records.WORKLOAD) for every cgroup row and every
process's cgroup, so that a view or a finding names what a path runs.
"""

from collections import namedtuple

from hostdiag.model import ErrorRecord
from hostdiag.sources.cgroups import DEFAULT_MAX_CGROUPS, DEFAULT_MAX_DEPTH, CgroupTable
from hostdiag.sources.hostroot import UNAVAILABLE
from hostdiag.sources.proc_pid import ProcessTable
from hostdiag.sources.proc_pid_fd import map_pids
from hostdiag.sources.proc_pid_limits import LimitsReader
from hostdiag.sources.sock_diag import SocketTable
from hostdiag.sources.workloads import WorkloadResolver

# The three table sections of one sample; any may be None.
Tables = namedtuple("Tables", "processes sockets cgroups")


class TableCollector:
    """The processes, sockets and cgroups sections of one :class:`HostRoot`,
    sample after sample. Use as a context manager or call :meth:`close`.

    ``netlink=False`` makes the socket table read /proc/net instead of
    sock_diag; ``fd_counts`` is passed to the process table;
    ``cgroup_depth`` and ``max_cgroups`` bound the cgroup walk (levels below
    each hierarchy's root, rows per sample).
    """

    def __init__(self, root, netlink=True, fd_counts="auto", cgroup_depth=DEFAULT_MAX_DEPTH,
                 max_cgroups=DEFAULT_MAX_CGROUPS):
        self.root = root
        self.processes = ProcessTable(root, fd_counts=fd_counts)
        self.limits = LimitsReader(root)
        self.sockets = SocketTable(root, netlink=netlink)
        self.cgroups = CgroupTable(root, max_depth=cgroup_depth, max_cgroups=max_cgroups)
        self.workloads = WorkloadResolver(root)

    def collect(self, problems):
        """:class:`Tables`: the processes, sockets and cgroups sections, in
        the order the module docstring gives; the cgroups section with its
        ``workloads``."""
        sockets = _table("sockets", self.sockets.collect, problems)
        cgroups = _table("cgroups", self.cgroups.collect, problems)
        processes = _table("processes", self.processes.scan, problems)
        if processes is not None:
            # A handful of small reads at most (cached), after the scan: the
            # rates' timing above is kept.
            processes["limits"] = _table("limits", lambda found: self.limits.read(processes["processes"], found),
                                         problems)
        if cgroups is not None:
            paths = [row["path"] for row in cgroups["cgroups"]]
            if processes is not None:
                paths.extend(p["cgroup"] for p in processes["processes"])
            cgroups["workloads"] = _table("workloads",
                                          lambda found: self.workloads.resolve_all(paths, found), problems)
        return Tables(processes, sockets, cgroups)

    def owners(self, inodes, problems):
        """``{str(inode): [{"pid", "comm"}]}`` for the socket inodes given (the
        ones a view shows): one walk of /proc/*/fd, so keep the list short.
        Keys are strings so that the mapping travels through JSON and msgpack
        alike; inodes no process holds are absent."""
        found = map_pids(self.root, inodes, problems)
        return {str(inode): holders for inode, holders in sorted(found.items())}

    def close(self):
        self.sockets.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _table(section, take, problems):
    """``take(problems)``, or None with an entry in ``problems`` when the
    source fails outright: a broken table costs its section, never the sample."""
    try:
        return take(problems)
    except Exception as exc:  # noqa: BLE001 - recorded in meta.errors with its type and message
        problems.add(section, "", UNAVAILABLE, "the %s table failed: %s: %s" % (section, type(exc).__name__, exc))
        return None


def attach(snapshot, processes, sockets, problems, cgroups=None):
    """Put the table sections into ``snapshot`` and the tables' problems into
    its ``meta.errors`` (after the system collection's own)."""
    snapshot.processes = processes
    snapshot.sockets = sockets
    snapshot.cgroups = cgroups
    add_errors(snapshot, problems)
    return snapshot


def add_errors(snapshot, problems):
    """Append the entries of ``problems`` to ``snapshot.meta.errors``."""
    snapshot.meta.errors.extend(ErrorRecord(**entry) for entry in problems.all())
