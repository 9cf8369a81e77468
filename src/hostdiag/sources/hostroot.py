"""The one root for every host path, and the one way host files are read.

No other module spells "/proc" or "/sys": they ask a :class:`HostRoot` for the
path under its roots, like node_exporter's ``--path.procfs``. Reading is apart
from parsing: :meth:`HostRoot.read` returns bytes and raises
:class:`SourceError` with a kind a snapshot can record.
"""

import errno
import os

# /proc files report st_size 0 or 4096 whatever they hold, so reads never trust
# stat(); they loop until EOF and stop at a cap instead.
DEFAULT_READ_CAP = 16 * 1024 * 1024
# The first read asks for 16 KiB, enough for nearly every file in one go: the
# kernel allocates and zeroes the asked size for /proc/sys files, so asking for
# 256 KiB up front costs ~30 µs where 16 KiB costs ~5 µs. So does the second
# read, the one that finds EOF (it zeroes the asked size too before returning
# nothing: 16 µs against 4 µs for a /proc/sys file), so it asks for 16 KiB as
# well. Only a file larger than that continues in 256 KiB reads.
_FIRST_CHUNK = 16 * 1024
_CHUNK = 256 * 1024
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC

MISSING = "missing"
ACCESS_DENIED = "access_denied"
IO_ERROR = "io_error"
TOO_LARGE = "too_large"
MALFORMED = "malformed"
UNAVAILABLE = "unavailable"


class SourceError(Exception):
    """A host file or interface could not be read; ``kind`` is one of the constants above."""

    def __init__(self, kind, path, message):
        super().__init__("%s: %s" % (path, message))
        self.kind = kind
        self.path = path
        self.message = message


def error_kind(exc):
    """Map an OSError to the kind recorded in a snapshot's meta.errors."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ESRCH):
        return MISSING
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ACCESS_DENIED
    return IO_ERROR


def _read_rest(fd, path, cap, first, more):
    """The rest of a file whose first two reads both returned bytes: read to
    EOF in 256 KiB reads, stopping as soon as the total passes ``cap``."""
    chunks = [first, more]
    size = len(first) + len(more)
    while size <= cap:
        chunk = os.read(fd, _CHUNK)
        if not chunk:
            break
        size += len(chunk)
        chunks.append(chunk)
    if size > cap:
        raise SourceError(TOO_LARGE, path, "larger than the read cap of %d bytes" % cap)
    return b"".join(chunks)


class HostRoot:
    """Where the host's procfs, sysfs and root filesystem are mounted.

    ``live`` is true when the roots are the running kernel's own, which is when
    live-kernel interfaces (netlink, /dev/kmsg) describe the same host as the
    files read and may be used.
    """

    def __init__(self, proc_root="/proc", sys_root="/sys", rootfs="/", read_cap=DEFAULT_READ_CAP):
        self.proc_root = os.path.abspath(proc_root)
        self.sys_root = os.path.abspath(sys_root)
        self.rootfs = os.path.abspath(rootfs)
        self.read_cap = read_cap
        self.live = (self.proc_root, self.sys_root, self.rootfs) == ("/proc", "/sys", "/")

    def proc(self, *parts):
        return os.path.join(self.proc_root, *parts)

    def sys(self, *parts):
        return os.path.join(self.sys_root, *parts)

    def host(self, *parts):
        """A path under the host's root filesystem (``/etc/os-release``, mount points)."""
        return os.path.join(self.rootfs, *(p.lstrip("/") for p in parts))

    def looks_like_procfs(self):
        """True when proc_root holds the files every Linux procfs has."""
        return all(os.path.isfile(self.proc(name)) for name in ("stat", "meminfo"))

    def read(self, path, cap=None):
        """The whole file at ``path`` as bytes, at most ``cap`` bytes."""
        if cap is None:
            cap = self.read_cap
        # Nearly every file fits the first read, and the second returns b""
        # (EOF): that path builds no list and catches nothing.
        try:
            fd = os.open(path, _OPEN_FLAGS)
            try:
                data = os.read(fd, _FIRST_CHUNK)
                if data and len(data) <= cap:
                    more = os.read(fd, _FIRST_CHUNK)
                    if more:
                        data = _read_rest(fd, path, cap, data, more)
            finally:
                os.close(fd)
        except OSError as exc:
            raise SourceError(error_kind(exc), path, exc.strerror or str(exc)) from None
        if len(data) > cap:
            raise SourceError(TOO_LARGE, path, "larger than the read cap of %d bytes" % cap)
        return data

    def read_proc(self, *parts, cap=None):
        return self.read(self.proc(*parts), cap)

    def read_sys(self, *parts, cap=None):
        return self.read(self.sys(*parts), cap)
