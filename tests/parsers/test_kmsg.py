"""/dev/kmsg records: table test of parsers/kmsg.py."""

import pytest

from hostdiag.parsers.kmsg import kernel_event, parse_kmsg_record


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


# Lines as this kernel and common drivers print them.
@pytest.mark.parametrize("message, expected", [
    ("Memory cgroup out of memory: Killed process 2590 (python3) total-vm:540856kB, anon-rss:52480kB, "
     "file-rss:6640kB, shmem-rss:0kB, UID:0 pgtables:176kB oom_score_adj:0",
     {"event": "oom_kill", "pid": 2590, "comm": "python3"}),
    ("Out of memory: Killed process 12 (web worker) total-vm:1kB",
     {"event": "oom_kill", "pid": 12, "comm": "web worker"}),
    ("oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/a,"
     "task_memcg=/a/b.service,task=python3,pid=2590,uid=0",
     {"event": "oom_kill", "pid": 2590, "comm": "python3", "cgroup": "/a/b.service",
      "constraint": "CONSTRAINT_MEMCG"}),
    ("oom-kill:constraint=CONSTRAINT_NONE,task=x,pid=,uid=0", None),          # no pid: no event
    ("INFO: task kworker/0:1:123 blocked for more than 120 seconds.",
     {"event": "hung_task", "pid": 123, "comm": "kworker/0:1", "blocked_s": 120}),
    ("I/O error, dev loop3, sector 0 op 0x1:(WRITE) flags 0x800 phys_seg 1 prio class 0",
     {"event": "io_error", "device": "loop3"}),
    ("blk_update_request: I/O error, dev sda, sector 2048 op 0x0:(READ)", {"event": "io_error", "device": "sda"}),
    ("Buffer I/O error on dev dm-0, logical block 0, lost async page write",
     {"event": "io_error", "device": "dm-0"}),
    ("python3[4242]: segfault at 0 ip 00007f4 sp 00007ff error 4 in libc.so.6[7f+1]",
     {"event": "segfault", "pid": 4242, "comm": "python3", "kind": "segfault"}),
    ("traps: hd-x[77] general protection fault ip:40 sp:7f error:0 in hd-x[40+1000]",
     {"event": "segfault", "pid": 77, "comm": "hd-x", "kind": "general protection fault"}),
    ("e1000e 0000:00:1f.6 enp0s31f6: NIC Link is Up 1000 Mbps Full Duplex",
     {"event": "link", "device": "enp0s31f6", "state": "up"}),
    ("ixgbe 0000:01:00.0 eth2: NIC Link is Down", {"event": "link", "device": "eth2", "state": "down"}),
    ("RBP: 00007f2af7bd0010 R08: 00000000ffffffff", None),
    ("segfault", None), ("", None), (None, None), ("x" * 100000, None),
])
def test_kernel_event_table(message, expected):
    assert kernel_event(message) == expected
