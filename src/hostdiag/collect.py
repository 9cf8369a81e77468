"""Wires the sources into one :class:`~hostdiag.model.Snapshot`.

This is where sources meet the model; the CLI and the agent call it.
"""

import os
import time

from hostdiag import parsers
from hostdiag.hostpaths import SourceError
from hostdiag.model import Cpu, ErrorRecord, Memory, Meta, Snapshot
from hostdiag.sources.cpu import collect_cpu
from hostdiag.sources.disks import collect_disks
from hostdiag.sources.filesystems import collect_filesystems
from hostdiag.sources.kernel import collect_kernel
from hostdiag.sources.memory import collect_memory
from hostdiag.sources.network import collect_network
from hostdiag.sources.pressure import collect_pressure
from hostdiag.sources.problems import Problems

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class SystemCollector:
    """Takes system snapshots of one host root, keeping the netlink socket
    open between samples. Use as a context manager or call :meth:`close`.

    A netlink socket that failed during a sample is closed and opened afresh
    for the next one: pyroute2 keeps failing a socket after a socket error.
    """

    def __init__(self, root, use_netlink=True):
        self.root = root
        self.use_netlink = bool(use_netlink) and root.live
        self.netlink = None

    def _open_netlink(self, problems):
        if self.netlink is None and self.use_netlink:
            from hostdiag.sources.netlink import Netlink

            try:
                self.netlink = Netlink()
            except SourceError as exc:
                problems.add("network", exc.path, exc.kind, exc.message)
        return self.netlink

    def close(self):
        if self.netlink is not None:
            self.netlink.close()
            self.netlink = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def collect(self, kmsg=False):
        """One snapshot of the system sections (no processes or sockets)."""
        root = self.root
        wall_ns = time.time_ns()
        mono_ns = time.monotonic_ns()
        problems = Problems()
        netlink = self._open_netlink(problems)
        cpu = collect_cpu(root, problems)
        memory = collect_memory(root, problems)
        pressure = collect_pressure(root, problems)
        disks = collect_disks(root, problems)
        filesystems = collect_filesystems(root, problems)
        before = len(problems.entries)
        network = collect_network(root, problems, netlink)
        if netlink is not None and any(
                e["path"].startswith("netlink") for e in problems.entries[before:]):
            self.close()
        kernel = collect_kernel(root, problems, kmsg=kmsg)
        duration_ns = time.monotonic_ns() - mono_ns
        meta = Meta(
            hostname=kernel["hostname"],
            boot_id=kernel["boot_id"],
            kernel=kernel["uname"]["release"],
            wall_ns=wall_ns,
            mono_ns=mono_ns,
            duration_ns=duration_ns,
            parser_impl=parsers.implementation(),
            clock_ticks=CLOCK_TICKS,
            proc_root=root.proc_root,
            sys_root=root.sys_root,
            live=root.live,
            errors=[ErrorRecord(**e) for e in problems.all()],
        )
        return Snapshot(
            meta=meta,
            cpu=Cpu(**cpu) if cpu is not None else None,
            memory=Memory(**memory) if memory is not None else None,
            pressure=pressure,
            disks=disks,
            filesystems=filesystems,
            network=network,
            kernel=kernel,
        )
