"""Block devices: /proc/diskstats, with partitions told apart from whole disks."""

import os
import re

from hostdiag.parsers import parse_diskstats

# A partition's name is its disk's name plus a number, with a "p" between when
# the disk's name ends in a digit (nvme0n1p1, mmcblk0p2, loop0p1).
_PARTITION_SUFFIX = re.compile(r"p?[0-9]+\Z")


def _is_partition_sysfs(root, name):
    """True/False from sysfs, or None when sysfs does not know the device."""
    block = root.sys("class", "block", name.replace("/", "!"))
    if not os.path.isdir(block):
        return None
    return os.path.exists(os.path.join(block, "partition"))


def _parent_by_name(name, names):
    for other in names:
        if other != name and name.startswith(other) and _PARTITION_SUFFIX.match(name[len(other):]):
            return other
    return None


def collect_disks(root, problems):
    """A list of devices: every diskstats field plus ``is_partition`` and
    ``parent`` (the whole disk of a partition, else None)."""
    devices = problems.parse(root, "disks", root.proc("diskstats"), parse_diskstats)
    if devices is None:
        return None
    names = [d["name"] for d in devices]
    for device in devices:
        parent = _parent_by_name(device["name"], names)
        from_sysfs = _is_partition_sysfs(root, device["name"])
        device["is_partition"] = from_sysfs if from_sysfs is not None else parent is not None
        device["parent"] = parent if device["is_partition"] else None
    return devices
