"""/proc/swaps: table test of parsers/swaps.py."""

import pytest

from hostdiag.parsers.swaps import parse_swaps

HEADER = b"Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
ZRAM = {"filename": "/dev/zram0", "type": "partition", "size_bytes": 1024 * 1024,
        "used_bytes": 2048, "priority": 100}


@pytest.mark.parametrize("data, expected", [
    (HEADER + b"/dev/zram0 partition 1024 2 100\n", ([ZRAM], 0)),
    (HEADER, ([], 0)),
    (b"", ([], 0)),
    (HEADER + b"/dev/zram0 partition 1024\n", ([], 1)),                  # truncated
    (HEADER + b"/dev/zram0 partition 1024 2 100 extra\n", ([], 1)),      # extra column
    (HEADER + b"/dev/zram0 partition big 2 100\n", ([], 1)),             # non-numeric
    (HEADER + b"/dev/zram0 partition 1024 2 high\n", ([], 1)),
    (HEADER + b"/swap\\040file file 8 0 -2\n",
     ([{"filename": "/swap file", "type": "file", "size_bytes": 8192, "used_bytes": 0,
        "priority": -2}], 0)),
    (HEADER + b"/" + b"s" * 100000 + b" file 8 0 -2\n",
     ([{"filename": "/" + "s" * 100000, "type": "file", "size_bytes": 8192, "used_bytes": 0,
        "priority": -2}], 0)),
])
def test_swaps_table(data, expected):
    assert parse_swaps(data) == expected
