"""Block devices: /proc/diskstats, with partitions told apart from whole disks."""

import os
import re

from hostdiag.parsers import parse_diskstats

SOURCE = "disks"
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


class DiskSource:
    """The disks section of one collector's samples.

    Whether a device is a partition, and of which disk, is worked out (two
    sysfs lookups and a scan of the other names) when a device first appears,
    and kept while a device of the same (name, major, minor) stays listed: the
    kernel gives a new partition a device of its own, so what a listed
    (name, major, minor) is does not change.
    """

    def __init__(self, root):
        self.root = root
        self._path = root.proc("diskstats")
        self._kinds = {}  # (name, major, minor) -> (is_partition, parent)

    def collect(self, problems):
        """A list of devices: every diskstats field plus ``is_partition`` and
        ``parent`` (the whole disk of a partition, else None)."""
        devices = problems.parse(self.root, SOURCE, self._path, parse_diskstats)
        if devices is None:
            return None
        known = self._kinds
        kinds = {}
        names = None
        for device in devices:
            key = (device["name"], device["major"], device["minor"])
            kind = known.get(key)
            if kind is None:
                if names is None:
                    names = [d["name"] for d in devices]
                kind = self._kind(device["name"], names)
            kinds[key] = kind
            device["is_partition"], device["parent"] = kind
        # Only the devices of this sample are kept: the cache never outgrows
        # the device list.
        self._kinds = kinds
        return devices

    def _kind(self, name, names):
        parent = _parent_by_name(name, names)
        from_sysfs = _is_partition_sysfs(self.root, name)
        is_partition = from_sysfs if from_sysfs is not None else parent is not None
        return is_partition, parent if is_partition else None
