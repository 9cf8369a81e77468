"""What the running process may see, and what each missing privilege hides.

What each capability buys was measured on Linux 6.18 as an unprivileged
system user given one capability at a time with ``setpriv`` (docs/security.md,
"Capabilities"). The effective set is what counts, not the uid: a root
process holds every capability unless a bounding set took some away.

:func:`read_privileges` reads the effective capability mask (``CapEff:`` of
/proc/self/status, a hexadecimal bit mask) and ``kernel.dmesg_restrict``;
:func:`unseen` turns them into one line per thing this process cannot read.
"""

import os

from hostdiag.sources.hostroot import SourceError

# Capability numbers from linux/capability.h.
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
CAP_SYS_PTRACE = 19
CAP_SYSLOG = 34

# The first kernel whose stat() of /proc/PID/fd reports the open fd count.
FD_COUNT_BY_STAT = (6, 2)

CAPABILITY_NAMES = {
    CAP_DAC_OVERRIDE: "CAP_DAC_OVERRIDE",
    CAP_DAC_READ_SEARCH: "CAP_DAC_READ_SEARCH",
    CAP_SYS_PTRACE: "CAP_SYS_PTRACE",
    CAP_SYSLOG: "CAP_SYSLOG",
}


class Privileges:
    """The facts :func:`unseen` needs: effective uid, effective capability
    numbers (a frozenset, or None when /proc/self/status could not be read),
    kernel.dmesg_restrict (an int, or None when unreadable) and the kernel's
    version."""

    __slots__ = ("euid", "capabilities", "dmesg_restrict", "kernel")

    def __init__(self, euid, capabilities, dmesg_restrict, kernel=None):
        self.euid = euid
        self.capabilities = capabilities
        self.dmesg_restrict = dmesg_restrict
        self.kernel = kernel  # (major, minor) of the running kernel, or None

    def has(self, capability):
        return self.capabilities is not None and capability in self.capabilities

    def names(self):
        """The effective capabilities this module knows about, by name."""
        if self.capabilities is None:
            return None
        return sorted(CAPABILITY_NAMES[c] for c in self.capabilities if c in CAPABILITY_NAMES)


def parse_capability_mask(status):
    """The set of capability numbers in the ``CapEff:`` line of a
    /proc/PID/status (bytes), or None when the line is missing or malformed."""
    for line in status.splitlines():
        if line.startswith(b"CapEff:"):
            try:
                mask = int(line[7:].strip(), 16)
            except ValueError:
                return None
            return frozenset(bit for bit in range(mask.bit_length()) if mask >> bit & 1)
    return None


def parse_kernel_version(release):
    """(major, minor) of a kernel release such as b"6.18.44-fc", or None."""
    parts = release.strip().split(b".")
    try:
        return int(parts[0]), int(parts[1].split(b"-")[0])
    except (IndexError, ValueError):
        return None


def read_privileges(root):
    """The privileges of this process. Only meaningful on a live root: a
    recorded tree's /proc/self is not this process."""
    try:
        capabilities = parse_capability_mask(root.read_proc("self", "status"))
    except SourceError:
        capabilities = None
    try:
        dmesg_restrict = int(root.read_proc("sys", "kernel", "dmesg_restrict").strip())
    except (SourceError, ValueError):
        dmesg_restrict = None
    try:
        kernel = parse_kernel_version(root.read_proc("sys", "kernel", "osrelease"))
    except SourceError:
        kernel = None
    return Privileges(os.geteuid(), capabilities, dmesg_restrict, kernel)


def unseen(privileges):
    """One line per kind of data these privileges cannot read, naming what
    would grant it; empty when nothing the agent reads is out of reach."""
    if privileges.capabilities is None:
        return ["unknown: /proc/self/status gave no capability mask"]
    search = privileges.has(CAP_DAC_READ_SEARCH) or privileges.has(CAP_DAC_OVERRIDE)
    ptrace = privileges.has(CAP_SYS_PTRACE)
    lines = []
    if not search:
        # From 6.2 stat() of /proc/PID/fd gives the count, which needs no
        # capability; before, the directory (mode 0500) must be listed.
        if privileges.kernel is None or privileges.kernel < FD_COUNT_BY_STAT:
            lines.append("fd counts of other users' processes on kernels before 6.2 (listing "
                         "/proc/PID/fd, mode 0500): needs CAP_DAC_READ_SEARCH")
        lines.append("space of mounts below directories this user may not search (statvfs): "
                     "needs CAP_DAC_READ_SEARCH")
    if not (search and ptrace):
        lines.append("storage I/O of other users' processes (/proc/PID/io is mode 0400 and "
                     "checked with ptrace_may_access): needs CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE")
        lines.append("owners of other users' sockets (/proc/PID/fd links, ptrace_may_access): "
                     "needs CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE")
    if privileges.dmesg_restrict is None:
        if not privileges.has(CAP_SYSLOG):
            lines.append("kernel log (/dev/kmsg) unless kernel.dmesg_restrict is 0: needs CAP_SYSLOG")
    elif privileges.dmesg_restrict and not privileges.has(CAP_SYSLOG):
        lines.append("kernel log (/dev/kmsg, kernel.dmesg_restrict=1): needs CAP_SYSLOG")
    return lines


def privilege_lines(root):
    """The lines `diag version` prints about privileges: the effective uid and
    capabilities, then what they cannot see (live root only)."""
    if not root.live:
        return ["privileges: not checked (not the live root)"]
    privileges = read_privileges(root)
    names = privileges.names()
    lines = ["privileges: euid %d, relevant capabilities %s" % (
        privileges.euid, "unknown" if names is None else (" ".join(names) or "none"))]
    missing = unseen(privileges)
    if missing:
        lines.append("cannot see:")
        lines.extend("  " + line for line in missing)
    else:
        lines.append("cannot see: nothing the agent reads")
    return lines
