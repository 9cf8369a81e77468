"""/proc/sys/kernel/* and /proc/sys/fs/file-nr: kernel and host identity, taint
and limits, with os-release (sources/os_release.py) and, when asked, recent
kernel log lines (sources/kmsg.py): the kernel section.

:class:`KernelSource` keeps what a host's identity and limits were between the
samples of one collector, because most of it cannot change while the kernel
runs and the rest changes only by an administrator's hand, while each
/proc/sys file costs as much to read as /proc/stat does to read and parse.
What is read when:

* every sample: ``tainted`` and ``file_nr`` (/proc/sys), and, on a live root,
  ``os.uname()`` (one system call) for ``hostname`` and ``uname``;
* once per collector: ``boot_id`` (fixed for a boot, and a collector does not
  outlive one) and, on a recorded or mounted root, ``uname``'s sysname,
  release and version (fixed while a kernel runs);
* every ``IDENTITY_REFRESH_SAMPLES`` samples, starting with the first:
  ``os_release``, ``pid_max``, ``threads_max``, the network limits the
  findings name (``net.core.netdev_max_backlog``, ``net.core.somaxconn``)
  and, on a recorded or mounted root, ``hostname``;
* ``kmsg`` only when a sample asks for it.

A cached value that could not be read records its error again in every
sample, so each snapshot's ``meta.errors`` stays complete.
"""

import os

from hostdiag.parsers.sysctl import parse_file_nr, parse_single_int, taint_letters
from hostdiag.sources.kmsg import read_kmsg
from hostdiag.sources.os_release import read_os_release
from hostdiag.sources.problems import Problems

SOURCE = "kernel"
# Samples between two reads of the values that only an administrator changes
# (os-release, pid_max, threads-max; the hostname of a non-live root): a
# minute of samples at the one-second interval of `diag`.
IDENTITY_REFRESH_SAMPLES = 60
# The sysctls the findings name as the limit that overflows: the per-CPU
# backlog that softnet drops fill, and the cap on a listener's backlog.
NET_LIMITS = ("net.core.netdev_max_backlog", "net.core.somaxconn")


def _text(data):
    return None if data is None else data.strip().decode("utf-8", "replace")


class _Recorded:
    """A value read once, with the errors its read recorded, replayed into
    each later sample's :class:`Problems`."""

    __slots__ = ("value", "entries")

    def __init__(self, read):
        scratch = Problems()
        self.value = read(scratch)
        self.entries = scratch.entries

    def get(self, problems):
        for entry in self.entries:
            problems.add(**entry)
        return self.value


class KernelSource:
    """The kernel section of one collector's samples (see the module's
    docstring for what is cached and for how long)."""

    def __init__(self, root, refresh_samples=IDENTITY_REFRESH_SAMPLES):
        self.root = root
        self.refresh_samples = max(1, refresh_samples)
        self._samples = 0
        self._tainted = root.proc("sys", "kernel", "tainted")
        self._file_nr = root.proc("sys", "fs", "file-nr")
        self._boot_id = None
        self._uname = None
        self._uts = None        # the last os.uname(), and its fields as the files spell them
        self._uts_text = None
        self._hostname = None
        self._os_release = None
        self._pid_max = None
        self._threads_max = None
        self._net_limits = None

    def _read_text(self, problems, *parts):
        return _text(problems.read(self.root, SOURCE, self.root.proc(*parts)))

    def _read_uname_files(self, problems):
        return (self._read_text(problems, "sys", "kernel", "ostype"),
                self._read_text(problems, "sys", "kernel", "osrelease"),
                self._read_text(problems, "sys", "kernel", "version"))

    def _read_limit(self, problems, name):
        return problems.parse(self.root, SOURCE, self.root.proc("sys", "kernel", name), parse_single_int)

    def _read_net_limits(self, problems):
        """The network sysctls a finding names with its limit: {sysctl name: value}."""
        return {name: problems.parse(self.root, SOURCE, self.root.proc("sys", *name.split(".")),
                                     parse_single_int)
                for name in NET_LIMITS}

    def _refresh(self):
        """Read again what only an administrator changes."""
        self._os_release = _Recorded(lambda p: read_os_release(self.root, p))
        if not self.root.live:
            self._hostname = _Recorded(lambda p: self._read_text(p, "sys", "kernel", "hostname"))
        self._pid_max = _Recorded(lambda p: self._read_limit(p, "pid_max"))
        self._threads_max = _Recorded(lambda p: self._read_limit(p, "threads-max"))
        self._net_limits = _Recorded(self._read_net_limits)

    def collect(self, problems, kmsg=False):
        """Identity (hostname, os-release, uname, boot id), taint, file handles,
        pid and thread limits; with ``kmsg``, recent warning-or-worse kernel
        log lines (live root only)."""
        root = self.root
        if self._boot_id is None:
            self._boot_id = _Recorded(lambda p: self._read_text(p, "sys", "kernel", "random", "boot_id"))
            if not root.live:
                self._uname = _Recorded(self._read_uname_files)
        if self._samples % self.refresh_samples == 0:
            self._refresh()
        self._samples += 1
        # Errors are recorded in the order of the files in the section.
        tainted = problems.parse(root, SOURCE, self._tainted, parse_single_int)
        os_release = self._os_release.get(problems)
        if root.live:
            # The same utsname the /proc/sys/kernel files show, in one system call.
            uts = os.uname()
            if uts != self._uts:
                self._uts = uts
                self._uts_text = tuple(_text(os.fsencode(field))
                                       for field in (uts.sysname, uts.release, uts.version, uts.nodename))
            sysname, release, version, hostname = self._uts_text
            machine = uts.machine
        else:
            sysname, release, version = self._uname.get(problems)
            hostname = self._hostname.get(problems)
            machine = None
        section = {
            "hostname": hostname,
            "boot_id": self._boot_id.get(problems),
            "os_release": dict(os_release) if os_release is not None else None,
            "uname": {"sysname": sysname, "release": release, "version": version, "machine": machine},
            "tainted": tainted,
            "taint_flags": taint_letters(tainted) if tainted is not None else None,
            "file_nr": problems.parse(root, SOURCE, self._file_nr, parse_file_nr),
            "pid_max": self._pid_max.get(problems),
            "threads_max": self._threads_max.get(problems),
            "sysctl": dict(self._net_limits.get(problems)),
            "kmsg": None,
        }
        if kmsg and root.live:
            section["kmsg"] = read_kmsg(root, problems)
        return section
