"""/dev/kmsg records: table test of parsers/kmsg.py."""

import pytest

from hostdiag.parsers.kmsg import parse_kmsg_record


@pytest.mark.parametrize("record, expected", [
    (b"3,1250,9876543,-;EXT4-fs error (device sda1): bad block\n SUBSYSTEM=block\n",
     {"severity": 3, "level": "err", "facility": 0, "seq": 1250, "ts_us": 9876543,
      "message": "EXT4-fs error (device sda1): bad block"}),
    (b"12,7,100,-,caller=T1;usb 1-1: new device\n",            # extra fields before ';'
     {"severity": 4, "level": "warning", "facility": 1, "seq": 7, "ts_us": 100,
      "message": "usb 1-1: new device"}),
    (b"6,1,2,-;tab\\x09and \\xzz kept\n",
     {"severity": 6, "level": "info", "facility": 0, "seq": 1, "ts_us": 2,
      "message": "tab\tand \\xzz kept"}),
    (b"6,1,2,-;" + b"m" * 100000,
     {"severity": 6, "level": "info", "facility": 0, "seq": 1, "ts_us": 2, "message": "m" * 100000}),
])
def test_kmsg_record_table(record, expected):
    assert parse_kmsg_record(record) == expected


@pytest.mark.parametrize("record", [
    b"", b"3,1250,9876543,-", b"3,1250;message", b"x,1,2,-;message", b"3,-1,2,-;message",
])
def test_malformed_kmsg_records(record):
    assert parse_kmsg_record(record) is None
