"""/proc/self/mountinfo with statvfs(2) of each mount: mounted filesystems, their space and inodes."""

import os

from hostdiag.sources.hostroot import MALFORMED, UNAVAILABLE, error_kind
from hostdiag.parsers.mountinfo import parse_mountinfo

SOURCE = "filesystems"

# Kernel-internal and pseudo filesystems: they hold no user data that can fill
# up. tmpfs stays in: a full /run or /dev/shm breaks a host too.
PSEUDO_FSTYPES = frozenset((
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs",
    "devpts", "devtmpfs", "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs",
    "proc", "pstore", "rpc_pipefs", "securityfs", "selinuxfs", "sysfs", "tracefs",
    "ramfs", "rootfs", "overlay", "squashfs", "iso9660", "fuse.portal",
))
PSEUDO_PREFIXES = ("/proc/", "/sys/", "/dev/", "/run/credentials/", "/var/lib/docker/")

STATVFS_FIELDS = ("size_bytes", "free_bytes", "avail_bytes", "files", "files_free", "readonly")


def _is_pseudo(mount):
    point = mount["mountpoint"]
    if mount["fstype"] in PSEUDO_FSTYPES:
        return True
    return point in ("/proc", "/sys", "/dev") or point.startswith(PSEUDO_PREFIXES)


class FilesystemSource:
    """The filesystems section of one collector's samples.

    mountinfo is read every sample, but parsed and filtered only when its
    bytes differ from the previous sample's (a mount or unmount happened);
    comparing the bytes costs far less than parsing them. statvfs() is called
    for every listed filesystem in every sample.
    """

    def __init__(self, root):
        self.root = root
        self._path = root.proc("self", "mountinfo")
        self._data = None
        # (entry without statvfs fields, path to statvfs) per filesystem of self._data
        self._mounts = None
        self._malformed = 0

    def collect(self, problems):
        """Real filesystems, one entry per mount of a device (bind mounts of the
        same device and root are listed once). Space is measured only on a
        live root: a recorded tree has no filesystem to ask, so those fields
        are None."""
        root = self.root
        data = problems.read(root, SOURCE, self._path)
        if data is None:
            return None
        if data != self._data:
            mounts, self._malformed = parse_mountinfo(data)
            self._mounts = [(entry, root.host(entry["mountpoint"])) for entry in _real_filesystems(mounts)]
            self._data = data
        if self._malformed:
            problems.add(SOURCE, self._path, MALFORMED,
                         "%d malformed line(s) skipped" % self._malformed, self._malformed)
        if not root.live:
            problems.add(SOURCE, self._path, UNAVAILABLE,
                         "statvfs skipped: the root is not the live host")
            return [dict(mount) for mount, _path in self._mounts]
        result = []
        for mount, path in self._mounts:
            entry = dict(mount)
            _add_statvfs(problems, path, entry)
            result.append(entry)
        return result


def _real_filesystems(mounts):
    """The mounts to list, as entries whose statvfs fields are None."""
    result = []
    seen = set()
    for mount in mounts:
        key = (mount["major"], mount["minor"], mount["root"])
        if _is_pseudo(mount) or key in seen:
            continue
        seen.add(key)
        entry = {
            "mountpoint": mount["mountpoint"], "device": mount["source"],
            "fstype": mount["fstype"], "major": mount["major"], "minor": mount["minor"],
            "options": mount["options"],
        }
        entry.update(dict.fromkeys(STATVFS_FIELDS))
        result.append(entry)
    return result


def _add_statvfs(problems, path, entry):
    try:
        st = os.statvfs(path)
    except OSError as exc:
        problems.add(SOURCE, path, error_kind(exc), exc.strerror or str(exc))
        return
    entry["size_bytes"] = st.f_blocks * st.f_frsize
    entry["free_bytes"] = st.f_bfree * st.f_frsize
    entry["avail_bytes"] = st.f_bavail * st.f_frsize
    # Filesystems without inode accounting (btrfs, vfat) report 0 files.
    entry["files"] = st.f_files if st.f_files else None
    entry["files_free"] = st.f_ffree if st.f_files else None
    entry["readonly"] = bool(st.f_flag & os.ST_RDONLY)
