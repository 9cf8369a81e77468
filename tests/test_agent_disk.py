"""A full disk under a real agent's spool: the agent keeps sampling and serving
from memory, says so, and writes to disk again once there is room.

The spool lives on a 2 MiB tmpfs of its own (root only: skipped otherwise), a
filler file takes the rest of it, and deleting the filler gives the room back.
Every wait is a poll with a deadline; the agent is stopped and the tmpfs
unmounted whatever happens.
"""

import errno
import os

import pytest

from agentproc import DEADLINE_S, AgentProcess, wait_for
from spoolhelpers import mount_tmpfs

RETRY_S = 0.5  # spool.retry_interval: how soon a degraded spool tries again


@pytest.fixture
def small_disk(workdir):
    """A 2 MiB tmpfs: a file system that really fills up."""
    mount_point = os.path.join(workdir, "disk")
    os.mkdir(mount_point)
    with mount_tmpfs(mount_point, "2m"):
        yield mount_point


@pytest.fixture
def agent(workdir, small_disk):
    """An agent (0.2 s interval) whose spool is on the small disk; killed before the disk goes."""
    home = os.path.join(workdir, "agent")
    os.mkdir(home)
    made = AgentProcess(home, spool={"dir": os.path.join(small_disk, "spool"), "max_bytes": "1MiB",
                                     "segment_bytes": "64KiB", "retry_interval": RETRY_S})
    yield made
    made.kill()


def fill(path):
    """Write ``path`` until the file system says ENOSPC; its size in bytes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    block = bytes(64 * 1024)
    size = 0
    try:
        while True:
            try:
                size += os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return size
    finally:
        os.close(fd)


def poll(agent, what, check, deadline_s=DEADLINE_S):
    """Call ``check`` until it returns something true; that value. Fails with the agent's log."""
    def found():
        value = check()
        if not value and agent.proc.poll() is not None:
            raise AssertionError("agent exited (%s) waiting for %s:\n%s"
                                 % (agent.proc.returncode, what, agent.log_tail()))
        return value
    return wait_for(found, what, deadline_s, on_fail=agent.log_tail)


def when(check, value):
    """``value`` when ``check(value)``, else None: a poll condition that keeps what it saw."""
    return value if check(value) else None


def test_full_disk_keeps_the_agent_going_from_memory_and_it_recovers(agent, small_disk):
    agent.start()
    client = agent.wait_ready()
    filler = os.path.join(small_disk, "filler")
    with client:
        poll(agent, "a record on disk", lambda: (client.info()["spool"]["newest_seq"] or 0) >= 3)
        assert fill(filler) > 0

        # The next write that needs a new page fails: the spool says why, and stops writing.
        info = poll(agent, "a degraded spool", lambda: when(lambda i: i["spool"]["degraded"], client.info()))
        assert "ENOSPC" in info["spool"]["degraded"] and info["spool"]["write_errors"] >= 1
        assert info["spool"]["retry_interval_s"] == RETRY_S
        on_disk = info["spool"]["newest_seq"]
        since = client.latest().seq

        # Sampling and serving go on from memory, with consecutive seqs, and the agent says so.
        latest = poll(agent, "records taken while degraded",
                      lambda: when(lambda r: r.seq >= since + 5, client.latest()))
        info = poll(agent, "the agent's self-report of the degraded spool",
                    lambda: when(lambda i: i["agent"]["spool"]["degraded"], client.info()))
        assert "ENOSPC" in info["agent"]["spool"]["degraded"]
        assert info["spool"]["newest_seq"] == on_disk and info["spool"]["degraded"]
        assert info["newest_seq"] >= latest.seq > on_disk
        assert info["gaps"] == []  # the ring still has what the disk has not
        in_memory = list(client.range(from_seq=on_disk + 1, to_seq=latest.seq, page=50))
        assert [r.seq for r in in_memory] == list(range(on_disk + 1, latest.seq + 1))
        assert all(r.snapshot["meta"]["wall_ns"] == r.wall_ns for r in in_memory)
        poll(agent, "the degraded spool in the log",
             lambda: "spool degraded, keeping history in memory only: ENOSPC" in agent.read_log())

        # Room again: within a retry interval the spool writes again, in a new segment.
        os.unlink(filler)
        info = poll(agent, "the spool writing again",
                    lambda: when(lambda i: i["spool"]["degraded"] is None and i["spool"]["newest_seq"] > latest.seq,
                                 client.info()),
                    deadline_s=RETRY_S + 15)
        assert info["spool"]["recoveries"] >= 1
        resumed = info["spool"]["newest_seq"]
        poll(agent, "records after the recovery on disk",
             lambda: client.info()["spool"]["newest_seq"] >= resumed + 3)
        poll(agent, "the recovery in the log", lambda: "spool writing again" in agent.read_log())
        stop_at = client.latest().seq
        seen = {r.seq: r.snapshot for r in client.range(from_seq=1, to_seq=stop_at, page=100)}
        assert sorted(seen) == list(range(1, stop_at + 1))
    assert agent.stop() == 0

    # A restart reads back what reached the disk: all before the disk filled, all after it had
    # room again; what was only in memory is a gap, and the seqs go on after it.
    agent.start()
    with agent.wait_ready() as client:
        info = client.info()
        boot = info["boot_id"]
        stored = [b for b in info["boots"] if b["boot_id"] == boot][0]["newest_seq"]
        assert stored >= stop_at
        back = list(client.range(from_seq=1, to_seq=stop_at, page=100))
        seqs = [r.seq for r in back]
        first_after = seqs[on_disk]
        assert seqs == list(range(1, on_disk + 1)) + list(range(first_after, stop_at + 1))
        assert latest.seq < first_after <= resumed
        assert [(g["from_seq"], g["to_seq"]) for g in info["gaps"] if g["boot_id"] == boot] == [
            (on_disk + 1, first_after - 1)]
        for record in back:
            assert record.snapshot == seen[record.seq]
        assert client.info()["spool"]["degraded"] is None
        poll(agent, "new records after the restart", lambda: client.latest().seq > stored)
    assert agent.stop() == 0
    log = agent.read_log()
    assert "Traceback" not in log, log[-4000:]
