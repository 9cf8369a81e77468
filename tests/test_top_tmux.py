"""`diag top`: the pure screen and keys, then the real thing in an 80×30
tmux pane (send keys, capture the pane, read the screen), and --once
following a real agent."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest

import hostdiag
from hostdiag.apps.top import HostFrames, main_top
from hostdiag.sources.hostroot import HostRoot
from hostdiag.views.top import INTERVALS, TopState, handle_key, render_screen, select_processes
from agentproc import AgentProcess, wait_for

SRC = os.path.dirname(os.path.dirname(hostdiag.__file__))
ROW = re.compile(r"^ *(\d+) (\S+) +\S +(\S+) +(\S+) +(\S+) +(\S+) +(\S+)  (.*)$")
UNITS = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def test_keys_change_the_state():
    state = TopState(1.0)
    for key, check in ((b"m", lambda s: s.sort == "m"), (b"f", lambda s: s.sort == "f"),
                       (b" ", lambda s: s.paused), (b" ", lambda s: not s.paused),
                       (b"+", lambda s: s.interval_s == 2.0), (b"-", lambda s: s.interval_s == 1.0),
                       (b"/", lambda s: s.typing == ""), (b"q", lambda s: s.typing == "q" and s.running)):
        handle_key(state, key[0])
        assert check(state), key
    for key in (127, ord("s"), ord("h"), 10):  # backspace, "sh", Enter
        handle_key(state, key)
    assert (state.filter, state.typing) == ("sh", None)
    handle_key(state, ord("/"))
    handle_key(state, ord("x"))
    handle_key(state, 27)  # Escape keeps the filter there was
    assert (state.filter, state.typing) == ("sh", None)
    for _ in range(len(INTERVALS) + 1):
        handle_key(state, ord("-"))
    assert state.interval_s == INTERVALS[0]
    handle_key(state, ord("q"))
    assert not state.running


def test_the_screen_of_real_samples_fits_any_width():
    frames = HostFrames(HostRoot("/proc", "/sys", "/"), netlink=False)
    try:
        frames()
        frame = frames()
    finally:
        frames.close()
    assert frame["rates"] is not None
    state = TopState(1.0)
    for width, height in ((40, 20), (80, 24), (132, 50)):
        lines = render_screen(frame, state, width, height)
        assert len(lines) == height  # this host has more processes than rows
        assert all(len(line) <= width for line in lines)
    lines = render_screen(frame, state, 200, 500)
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("PID "))
    rows = [ROW.match(line) for line in lines[header + 1:]]
    assert rows and all(rows)
    assert str(os.getpid()) in [m.group(1) for m in rows]

    state.filter = "python"
    chosen = select_processes([{"pid": 1, "comm": "init", "command": "/sbin/init", "user": "root", "cpu_pct": 1.0},
                               {"pid": 2, "comm": "python3", "command": "python3 x", "user": "ann", "cpu_pct": None},
                               {"pid": 3, "comm": "sh", "command": "sh", "user": "python", "cpu_pct": 0.5}],
                              "cpu_pct", state.filter)
    assert [p["pid"] for p in chosen] == [3, 2]  # unknown CPU last


def _bytes(text):
    return 0 if text == "-" else float(text[:-1]) * UNITS[text[-1]]


class Pane:
    """An 80×30 tmux session running one command; the screen as lines."""

    def __init__(self, command):
        self.name = "hd-test-%s" % uuid.uuid4().hex[:8]
        subprocess.run(["tmux", "new-session", "-d", "-x", "80", "-y", "30", "-s", self.name, command], check=True)

    def screen(self):
        result = subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True)
        return result.stdout.splitlines() if result.returncode == 0 else []

    def wait_screen(self, condition, what):
        """Until ``condition(lines)`` holds for a capture; those lines."""
        seen = []

        def holds():
            seen[:] = [self.screen()]
            return condition(seen[0])
        wait_for(holds, what, deadline_s=30, on_fail=lambda: "\n".join(self.screen()))
        return seen[0]

    def keys(self, *keys):
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def alive(self):
        return subprocess.run(["tmux", "has-session", "-t", self.name], capture_output=True).returncode == 0

    def pid(self):
        result = subprocess.run(["tmux", "display-message", "-p", "-t", self.name, "#{pane_pid}"],
                                capture_output=True, text=True, check=True)
        return int(result.stdout)

    def kill(self):
        if self.alive():
            subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def _rows(lines):
    return [m for m in (ROW.match(line) for line in lines) if m]


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_top_under_tmux_sorts_filters_pauses_and_quits():
    pane = Pane("exec env PYTHONPATH=%s %s -m hostdiag top --interval 0.5" % (SRC, sys.executable))
    try:
        lines = pane.wait_screen(lambda s: len(_rows(s)) > 5 and "busy -" not in "\n".join(s),
                                 "the first screen with rates and processes")
        assert lines[0].startswith("hostdiag top  ") and "every 0.5s" in lines[0]
        assert any(line.startswith("CPU   busy ") for line in lines)
        assert all(len(line) <= 80 for line in lines)
        top_pid = pane.pid()

        pane.keys("m")
        lines = pane.wait_screen(lambda s: any(l.startswith("sort mem ") for l in s), "sort by memory")
        rss = [_bytes(m.group(4)) for m in _rows(lines)]
        assert rss == sorted(rss, reverse=True), rss

        pane.keys("/", "hostdiag", "Enter")
        lines = pane.wait_screen(lambda s: any("filter 'hostdiag'" in l for l in s) and _rows(s),
                                 "the filter")
        rows = _rows(lines)
        for match in rows:  # the screen cuts the command: the process's own, where it still runs, has the word
            try:
                with open("/proc/%s/cmdline" % match.group(1), "rb") as f:
                    assert b"hostdiag" in f.read().lower(), match.group(0)
            except FileNotFoundError:
                continue
        assert str(top_pid) in [m.group(1) for m in rows]

        pane.keys("Space")
        pane.wait_screen(lambda s: s and "PAUSED" in s[0], "pause")
        pane.keys("Space", "+")
        pane.wait_screen(lambda s: s and "every 1s" in s[0], "a longer interval")

        pane.keys("q")
        wait_for(lambda: not pane.alive(), "the session to end after q", deadline_s=30)
    finally:
        pane.kill()


def test_once_following_an_agent(capsys):
    workdir = tempfile.mkdtemp(prefix="hdt-", dir="/tmp")
    agent = AgentProcess(workdir)
    try:
        agent.start().wait_ready().close()
        agent.wait_newest(3)
        assert main_top(["--once", "--agent", agent.address, "--width", "132"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert re.match(r"hostdiag top  \S+  \d\d:\d\d:\d\d  every 1s  agent %s seq \d+$" % re.escape(agent.address),
                        lines[0]), lines[0]
        assert any(line.startswith("CPU   busy ") and "busy -" not in line for line in lines)
        assert all(len(line) <= 132 for line in lines)
    finally:
        agent.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def test_the_live_screen_needs_a_terminal(capsys):
    assert main_top([]) == 2
    assert "needs a terminal; --once prints one screen" in capsys.readouterr().err
    assert main_top(["--interval", "0"]) == 2
    assert main_top(["--agent", "unix:/nonexistent/agent.sock", "--once"]) == 1
    assert "cannot reach the agent" in capsys.readouterr().err


# -- diag replay -----------------------------------------------------------------

def test_new_finding_index_finds_where_a_finding_starts():
    from hostdiag.apps.replay import new_finding_index

    ids = [{"a"}, {"a"}, {"a", "b"}, {"b"}, {"b"}, {"c"}]
    def ids_of(i):
        return ids[i]
    assert new_finding_index(ids_of, 1, len(ids), 1) == 2
    assert new_finding_index(ids_of, 3, len(ids), 1) == 5
    assert new_finding_index(ids_of, 4, -1, -1) == 2
    assert new_finding_index(ids_of, 1, -1, -1) == 0  # the first sample's findings are all new
    assert new_finding_index(lambda i: set(), 0, 6, 1) is None


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_replay_under_tmux_steps_jumps_and_quits():
    workdir = tempfile.mkdtemp(prefix="hdp-", dir="/tmp")
    agent = AgentProcess(workdir)
    pane = None
    try:
        agent.start().wait_ready().close()
        agent.wait_newest(10)
        with agent.client() as client:
            records = list(client.range(from_seq=1))
        first, last = records[0], records[-1]
        pane = Pane("exec env PYTHONPATH=%s %s -m hostdiag replay --agent %s --from %d --to %d"
                    % (SRC, sys.executable, agent.address, first.wall_ns, last.wall_ns))
        count = len(records)

        def at(position):
            return lambda s: len(s) > 2 and s[2].startswith("seq %d (%d/%d) " % (records[position - 1].seq,
                                                                                 position, count))
        lines = pane.wait_screen(at(1), "the first sample")
        assert "  replay 20" in lines[0] and lines[2].endswith(" start of the range")
        pane.keys(".")
        lines = pane.wait_screen(at(2), "one sample forward")
        step = (records[1].wall_ns - records[0].wall_ns) / 1e9
        # A loaded host may stall the 0.2 s agent: the step is then also called a gap.
        assert re.search(r" \+%.1fs( GAP: .*)?$" % step, lines[2]), lines[2]
        pane.keys("Right")
        pane.wait_screen(at(3), "one more with the arrow key")
        pane.keys(",")
        pane.wait_screen(at(2), "one back")
        pane.keys("]")
        pane.wait_screen(at(count), "a minute forward: the range is shorter, so its end")
        pane.keys("[")
        pane.wait_screen(at(1), "a minute back: its start")
        pane.keys("q")
        wait_for(lambda: not pane.alive(), "the session to end after q", deadline_s=30)
    finally:
        if pane is not None:
            pane.kill()
        agent.kill()
        shutil.rmtree(workdir, ignore_errors=True)
