"""/proc/self/mountinfo: table test of parsers/mountinfo.py."""

import pytest

from hostdiag.parsers.mountinfo import parse_mountinfo

ROOT = b"29 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro\n"
ROOT_D = {"mount_id": 29, "parent_id": 1, "major": 259, "minor": 2, "root": "/", "mountpoint": "/",
          "options": "rw,relatime", "fstype": "ext4", "source": "/dev/nvme0n1p2",
          "super_options": "rw,errors=remount-ro"}


@pytest.mark.parametrize("data, expected", [
    (ROOT, ([ROOT_D], 0)),
    (b"", ([], 0)),
    (b"\n  \n", ([], 0)),
    (ROOT[:40], ([], 1)),                                                    # truncated: no separator
    (ROOT.replace(b" rw,errors=remount-ro", b""), ([dict(ROOT_D, super_options=None)], 0)),
    (ROOT.replace(b"259:2", b"259-2"), ([], 1)),                             # no major:minor
    (ROOT.replace(b"29 1", b"x 1"), ([], 1)),                                # non-numeric id
    # optional fields before the separator: any number of them
    (ROOT.replace(b"shared:1", b"shared:1 master:2 propagate_from:3"), ([ROOT_D], 0)),
    (ROOT.replace(b"/ / rw", b"/ /mnt/my\\040disk rw"), ([dict(ROOT_D, mountpoint="/mnt/my disk")], 0)),
    (ROOT.replace(b" / rw", b" /" + b"m" * 100000 + b" rw"), ([dict(ROOT_D, mountpoint="/" + "m" * 100000)], 0)),
    (ROOT + b"garbage\n" + ROOT, ([ROOT_D, ROOT_D], 1)),
])
def test_mountinfo_table(data, expected):
    assert parse_mountinfo(data) == expected
