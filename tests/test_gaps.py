"""Gaps in time: the pure finder (derive.gaps) on made-up timelines, then a
real agent killed for a moment, seen by `diag history` and `diag show`."""

import json
import re
import shutil
import tempfile
import time

import pytest

from hostdiag.apps.history import main_history, main_show
from hostdiag.apps.replay import main_replay
from hostdiag.derive.gaps import Point, find_gaps, gap_at, typical_interval
from agentproc import INTERVAL, AgentProcess, wait_for

NS = 1_000_000_000
T0 = 1_800_000_000 * NS


def points(*rows, boot="b1", started=None):
    """Points from (seq, seconds after T0) rows; monotonic = wall."""
    return [Point(boot, seq, T0 + int(s * NS), T0 + int(s * NS), started) for seq, s in rows]


def test_a_steady_timeline_has_no_gap():
    timeline = points(*((seq, seq * 1.0) for seq in range(1, 20)))
    assert typical_interval(timeline) == 1.0
    assert find_gaps(timeline) == []
    assert find_gaps([]) == [] and find_gaps(timeline[:1], 1.0) == []


def test_time_without_sample_and_whole_seqs_is_a_time_gap():
    timeline = points((1, 1), (2, 2), (3, 3), (4, 7.5), (5, 8.5))
    (gap,) = find_gaps(timeline, 1.0)
    assert (gap["after_seq"], gap["before_seq"], gap["from_seq"], gap["to_seq"]) == (3, 4, None, None)
    assert (gap["start_ns"], gap["end_ns"], gap["seconds"]) == (T0 + 3 * NS, T0 + int(7.5 * NS), 4.5)
    assert gap["cause"] == "unknown"
    # Two intervals is still on time; a little more is not.
    assert find_gaps(points((1, 1), (2, 3)), 1.0) == []
    assert len(find_gaps(points((1, 1), (2, 3.01)), 1.0)) == 1
    assert gap_at([gap], T0 + 5 * NS) is gap and gap_at([gap], T0 + 3 * NS) is None


def test_causes_restart_new_boot_clock_and_lost_seqs():
    before = points((1, 1), (2, 2), started=T0)
    after = points((3, 6), (4, 7), started=T0 + 5 * NS)
    assert [g["cause"] for g in find_gaps(before + after, 1.0)] == ["restart"]

    other_boot = points((1, 60), (2, 61), boot="b2")
    (gap,) = find_gaps(before + other_boot, 1.0)
    assert (gap["cause"], gap["boot_id"], gap["next_boot_id"], gap["from_seq"]) == ("new_boot", "b1", "b2", None)

    # The wall clock stepped 30 s forward while the monotonic clock moved 1 s.
    jumped = [Point("b1", 3, T0 + 33 * NS, T0 + 3 * NS, None)]
    assert [g["cause"] for g in find_gaps(points((1, 1), (2, 2)) + jumped, 1.0)] == ["clock_jump"]
    backwards = points((1, 10), (2, 11)) + points((3, 5))
    assert [(g["cause"], g["seconds"]) for g in find_gaps(backwards, 1.0)] == [("clock_jump", -6.0)]

    lost = points((1, 1), (2, 2), (7, 7))
    (gap,) = find_gaps(lost, 1.0, {("b1", 3): "corrupt"})
    assert (gap["from_seq"], gap["to_seq"], gap["cause"]) == (3, 6, "corrupt")
    # Seqs missing on time (records dropped, not unsampled) are still a gap.
    (gap,) = find_gaps(points((1, 1), (2, 2), (4, 3)), 1.0)
    assert (gap["from_seq"], gap["to_seq"], gap["cause"]) == (3, 3, "not_kept")


@pytest.fixture
def restarted_agent():
    """A real agent killed with SIGKILL, left down for at least 5 intervals,
    started again: (agent, wall ns of the newest record seen before the kill,
    wall ns of the kill, wall ns of the new start)."""
    workdir = tempfile.mkdtemp(prefix="hdg-", dir="/tmp")
    agent = AgentProcess(workdir)
    try:
        agent.start().wait_ready().close()
        seen_ns = agent.wait_newest(5)["newest_wall_ns"]
        killed_ns = time.time_ns()
        agent.kill()
        down_until = time.monotonic() + 5 * INTERVAL
        wait_for(lambda: time.monotonic() >= down_until, "five intervals without an agent")
        started_ns = time.time_ns()
        agent.start().wait_ready().close()
        newest = agent.info()["newest_seq"]
        agent.wait_newest(newest + 3)
        yield agent, seen_ns, killed_ns, started_ns
    finally:
        agent.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def test_an_agent_killed_for_a_moment_leaves_a_time_gap(restarted_agent, capsys):
    agent, seen_ns, killed_ns, started_ns = restarted_agent
    with agent.client() as client:
        records = list(client.range(from_seq=1))
    starts = [r.snapshot["agent"]["started_wall_ns"] for r in records]
    first_new = next(i for i, s in enumerate(starts) if s != starts[0])
    last_old, first_of_new = records[first_new - 1], records[first_new]

    assert main_history(["--agent", agent.address, "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    # A loaded host may also stall the 0.2 s agent for a moment (cause "unknown"): one gap is the restart.
    (gap,) = [g for g in document["time_gaps"] if g["cause"] == "restart"]
    assert {g["cause"] for g in document["time_gaps"]} <= {"restart", "unknown"}
    assert (gap["start_ns"], gap["end_ns"]) == (last_old.wall_ns, first_of_new.wall_ns)
    # The gap starts at the newest record taken before the kill (at or after the one
    # seen just before it) and ends at the first record of the new agent.
    assert seen_ns <= gap["start_ns"] <= killed_ns
    assert started_ns <= gap["end_ns"]
    assert gap["seconds"] >= 5 * INTERVAL
    assert document["interval_s"] == INTERVAL

    assert main_history(["--agent", agent.address]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^TIME GAPS  [1-9][0-9]*  ", out, re.M), out
    assert re.search(r"seq %d\.\.%d: the agent started again" % (last_old.seq, first_of_new.seq), out), out
    assert re.search(r"^KEPT   ring [0-9.]+ [KM]iB of 64 MiB, [0-9]+ of [0-9]+ records; spool [0-9.]+ [KM]iB of "
                     r"[0-9.]+ [MG]iB, [0-9]+ days?$", out, re.M), out

    inside = (last_old.wall_ns + first_of_new.wall_ns) // 2
    assert main_show(["--agent", agent.address, "--at", str(inside), "--width", "200"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "seq %d at" % last_old.seq in lines[0]
    gap_line = next(line for line in lines if line.startswith("GAP "))
    assert "the asked time is inside a gap" in gap_line and "the agent started again" in gap_line

    # The replay names the gap on the first sample after it, within 80 columns.
    assert main_replay(["--agent", agent.address, "--once", "--from", str(records[0].wall_ns),
                        "--at", str(first_of_new.wall_ns)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("seq %d (%d/" % (first_of_new.seq, first_new + 1))
    assert lines[2].endswith(" GAP: the agent started again (same boot)"), lines[2]
