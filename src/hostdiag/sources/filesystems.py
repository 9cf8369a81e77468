"""Mounted filesystems from mountinfo, with space and inodes from statvfs."""

import os

from hostdiag.hostpaths import UNAVAILABLE, error_kind
from hostdiag.parsers.coldpath import parse_mountinfo

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


def collect_filesystems(root, problems):
    """Real filesystems, one entry per mount of a device (bind mounts of the
    same device and root are listed once). Space is measured only on a live
    root: a recorded tree has no filesystem to ask, so those fields are None."""
    mounts = problems.parse(root, "filesystems", root.proc("self", "mountinfo"), parse_mountinfo)
    if mounts is None:
        return None
    result = []
    seen = set()
    if not root.live:
        problems.add("filesystems", root.proc("self", "mountinfo"), UNAVAILABLE,
                     "statvfs skipped: the root is not the live host")
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
        if root.live:
            _add_statvfs(root, problems, entry)
        result.append(entry)
    return result


def _add_statvfs(root, problems, entry):
    path = root.host(entry["mountpoint"])
    try:
        st = os.statvfs(path)
    except OSError as exc:
        problems.add("filesystems", path, error_kind(exc), exc.strerror or str(exc))
        return
    entry["size_bytes"] = st.f_blocks * st.f_frsize
    entry["free_bytes"] = st.f_bfree * st.f_frsize
    entry["avail_bytes"] = st.f_bavail * st.f_frsize
    # Filesystems without inode accounting (btrfs, vfat) report 0 files.
    entry["files"] = st.f_files if st.f_files else None
    entry["files_free"] = st.f_ffree if st.f_files else None
    entry["readonly"] = bool(st.f_flag & os.ST_RDONLY)
