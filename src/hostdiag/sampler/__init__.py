"""Builds samples: the system counters plus, when due, the process, socket and cgroup tables
and the network namespaces.

:class:`Sampler` is the one way a snapshot is taken, by `diag` and by the
agent alike: a :class:`~hostdiag.sampler.system.SystemCollector` for the
system sections and a :class:`~hostdiag.sampler.tables.TableCollector` for
the tables, taken in the order the per-process rates need (see
:mod:`hostdiag.sampler.tables`: the tables right before the system
collection, the processes last). The socket owners are found on demand,
for the sockets a view shows. The network namespaces
(:class:`~hostdiag.sources.netns.NetnsTable`) are read with the tables, after
the system collection: they are found from the process table.
"""

import time

from hostdiag.sampler.system import SystemCollector
from hostdiag.sampler.tables import TableCollector, add_errors, attach
from hostdiag.sampler.tables import _table as guarded
from hostdiag.sources.cgroups import DEFAULT_MAX_CGROUPS, DEFAULT_MAX_DEPTH
from hostdiag.sources.netns import DEFAULT_MAX_NETNS, NetnsTable
from hostdiag.sources.problems import Problems


class Sampler:
    """Snapshots of one :class:`HostRoot`, sample after sample; each source
    keeps its state (netlink sockets, per-process caches) between samples.
    Use as a context manager or call :meth:`close`.

    ``netlink=False`` reads links and sockets from /proc/net; ``tables=False``
    never takes the process, socket and cgroup tables (their sections stay
    None); ``cgroup_depth`` and ``max_cgroups`` bound the cgroup walk
    (:class:`~hostdiag.sampler.tables.TableCollector`); ``max_netns`` bounds
    the network namespaces visited per sample (:mod:`hostdiag.sources.netns`).
    After each :meth:`sample`, ``table_seconds`` is how long the tables took
    and ``netns_seconds`` how long the namespaces took (both None when the
    tables were not taken).
    """

    def __init__(self, root, netlink=True, tables=True, cgroup_depth=DEFAULT_MAX_DEPTH,
                 max_cgroups=DEFAULT_MAX_CGROUPS, max_netns=DEFAULT_MAX_NETNS):
        self.system = SystemCollector(root, use_netlink=netlink)
        self.tables = (TableCollector(root, netlink=netlink, cgroup_depth=cgroup_depth, max_cgroups=max_cgroups)
                       if tables else None)
        self.netns = NetnsTable(root, max_netns=max_netns, netlink=netlink) if tables else None
        self.table_seconds = self.netns_seconds = None

    def sample(self, tables=True, kmsg=False):
        """One :class:`~hostdiag.model.Snapshot`; with the process, socket and
        cgroup tables when ``tables`` and the sampler has them; the kernel's new
        /dev/kmsg lines when ``kmsg``."""
        self.table_seconds = self.netns_seconds = None
        if not tables or self.tables is None:
            return self.system.collect(kmsg=kmsg)
        problems = Problems()
        started = time.monotonic()
        taken = self.tables.collect(problems)
        self.table_seconds = time.monotonic() - started
        snapshot = self.system.collect(kmsg=kmsg)
        started = time.monotonic()
        snapshot.netns = guarded("netns", lambda found: self.netns.collect(found, taken.processes), problems)
        self.netns_seconds = time.monotonic() - started
        return attach(snapshot, taken.processes, taken.sockets, problems, cgroups=taken.cgroups)

    def add_socket_owners(self, snapshot, inodes):
        """Set ``snapshot.sockets["owners"]`` to the processes holding the
        socket ``inodes`` (those a view will show); nothing without a socket table."""
        if self.tables is None or snapshot.sockets is None:
            return
        problems = Problems()
        snapshot.sockets["owners"] = self.tables.owners(inodes, problems)
        add_errors(snapshot, problems)

    def close(self):
        self.system.close()
        if self.tables is not None:
            self.tables.close()
            self.netns.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
