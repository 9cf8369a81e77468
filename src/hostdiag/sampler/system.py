"""Wires the sources into one :class:`~hostdiag.model.Snapshot`.

This is where sources meet the model; :class:`hostdiag.sampler.Sampler`
calls it, for `diag` and the agent alike.
"""

import os
import time

from hostdiag import parsers
from hostdiag.sources.hostroot import SourceError
from hostdiag.model import Cpu, ErrorRecord, Memory, Meta, Snapshot
from hostdiag.sources.diskstats import DiskSource
from hostdiag.sources.meminfo_vmstat_swaps import MemorySource
from hostdiag.sources.mountinfo import FilesystemSource
from hostdiag.sources.network import NetworkSource
from hostdiag.sources.pressure import PressureSource
from hostdiag.sources.proc_sys import KernelSource
from hostdiag.sources.stat_loadavg_uptime import CpuSource
from hostdiag.sources.problems import Problems

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class SystemCollector:
    """Takes system snapshots of one host root, keeping the netlink socket
    open between samples. Use as a context manager or call :meth:`close`.

    Each source keeps what does not change between samples (kernel identity,
    which devices are partitions, the parsed mount table while mountinfo's
    bytes repeat, which PSI files exist; see each ``*Source`` class for what
    and for how long), so a collector is meant to be reused.

    A netlink socket that failed during a sample is closed and opened afresh
    for the next one: a dump that failed midway can leave replies queued on it.
    """

    def __init__(self, root, use_netlink=True):
        self.root = root
        self.use_netlink = bool(use_netlink) and root.live
        self.netlink = None
        self.cpu = CpuSource(root)
        self.memory = MemorySource(root)
        self.pressure = PressureSource(root)
        self.disks = DiskSource(root)
        self.filesystems = FilesystemSource(root)
        self.network = NetworkSource(root)
        self.kernel = KernelSource(root)

    def _open_netlink(self):
        """The netlink socket and None, or None and the SourceError that kept
        it from opening (None too when netlink is not used)."""
        if self.netlink is None and self.use_netlink:
            from hostdiag.sources.rtnetlink import Netlink

            try:
                self.netlink = Netlink()
            except SourceError as exc:
                return None, exc
        return self.netlink, None

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
        netlink, netlink_failure = self._open_netlink()
        cpu = self.cpu.collect(problems)
        memory = self.memory.collect(problems)
        pressure = self.pressure.collect(problems)
        disks = self.disks.collect(problems)
        filesystems = self.filesystems.collect(problems)
        before = len(problems.entries)
        network = self.network.collect(problems, netlink, netlink_failure)
        if netlink is not None and any(
                e["path"].startswith("netlink") for e in problems.entries[before:]):
            self.close()
        kernel = self.kernel.collect(problems, kmsg=kmsg)
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
