"""The report fits the terminal: golden screens of recorded snapshots at 80
and 132 columns (the one-screen view and --full), the one-screen view's
line budget, the table layout, symptoms, culprits and bind mounts, then the
real command: 80 columns off a terminal, --width, --full, and the width of a
real pseudo-terminal (a tmux pane).

The snapshots are recorded by ``tests/fixtures/report/record.py``. After a
deliberate change of the layout, write the golden screens again with

    HOSTDIAG_REGEN_GOLDEN=1 PYTHONPATH=src python -m pytest tests/test_report_screen.py -k golden

and read ``git diff tests/fixtures/report/golden`` before committing them.
"""

import copy
import gzip
import json
import os
import pathlib
import shutil
import subprocess
import sys
import uuid

import pytest

import hostdiag
from hostdiag.findings import evaluate
from hostdiag.model import Snapshot
from hostdiag.views.report import render_text
from hostdiag.views.text import Column, cut_middle, fit_table
from agentproc import wait_for

RECORDED = pathlib.Path(__file__).resolve().parent / "fixtures" / "report"
GOLDEN = RECORDED / "golden"
SRC = os.path.dirname(os.path.dirname(hostdiag.__file__))
REGENERATE = bool(os.environ.get("HOSTDIAG_REGEN_GOLDEN"))


def recorded(name):
    """(snapshot, rates, findings) of a recorded `diag --format json`."""
    with gzip.open(RECORDED / ("%s.json.gz" % name), "rt") as f:
        document = json.load(f)
    return Snapshot.from_dict(document["snapshot"]), document["rates"], document["findings"]


@pytest.fixture(scope="module")
def busy():
    return recorded("busy-host")


@pytest.mark.parametrize("name", ["busy-host", "one-snapshot"])
@pytest.mark.parametrize("width", [80, 132])
@pytest.mark.parametrize("full", [False, True], ids=["screen", "full"])
def test_golden_screens(name, width, full):
    snapshot, rates, findings = recorded(name)
    text = render_text(snapshot, rates, findings, width=width, full=full)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    assert all(line == line.rstrip() for line in lines)
    if not full:
        assert len(lines) <= 40
    golden = GOLDEN / ("%s-%d%s.txt" % (name, width, "-full" if full else ""))
    if REGENERATE:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), "the screen changed; see the module doc to write it again"


def test_the_busy_screen_puts_findings_first_and_processes_last(busy):
    snapshot, rates, findings = busy
    lines = render_text(snapshot, rates, findings).splitlines()
    assert lines[1] == "FINDINGS %d" % len(findings)
    titles = [line for line in lines if line.startswith(("  WARN  ", "  CRIT  "))]
    assert len(titles) == len(findings)
    labels = [line.split()[0] for line in lines[2:] if line[:1] not in (" ", "")]
    assert labels[:4] == ["LOAD", "CPU", "PRESSURE", "MEMORY"]
    assert labels[-3:] == ["WORKLOADS", "PROCS", "PROC"]
    # Quiet blocks fold to one line; the disk written at 1 GiB/s unfolds.
    assert next(line for line in lines if line.startswith("FS ")).startswith("FS       2 filesystems, none 80% full")
    assert lines[lines.index(next(line for line in lines if line.startswith("DISK"))) + 1].startswith("         vda ")
    full = render_text(snapshot, rates, findings, full=True).splitlines()
    assert len(full) > 80
    assert {"PROC CPU", "PROC MEM", "PROC IO", "PROC FLT", "UDP", "CONNTRK"} <= {line[:8].strip() for line in full}


def test_figures_agree_between_a_finding_and_its_block(busy):
    """The steal of a finding's title, its evidence and the CPU line are one
    figure; busy leaves steal apart."""
    snapshot, rates, _ = busy
    rates = copy.deepcopy(rates)
    rates["cpu"]["total"].update(user_pct=60.0, system_pct=15.0, steal_pct=12.6, iowait_pct=0.0, idle_pct=12.4,
                                 busy_pct=75.0)
    findings = [f for f in evaluate(snapshot, rates) if f["id"] == "cpu_steal"]
    assert findings and findings[0]["title"] == "13 % of CPU time stolen by the hypervisor"
    lines = render_text(snapshot, rates, findings).splitlines()
    assert "steal_pct 13%" in lines[3]
    cpu = next(line for line in lines if line.startswith("CPU %"))
    assert cpu.startswith("CPU %    busy 75  usr 60  sys 15  iowait 0") and "  steal 13  " in cpu


def test_who_leaves_out_culprits_that_contribute_nothing(busy):
    snapshot, rates, _ = busy
    culprits = [{"kind": "process", "pid": pid, "comm": "w%d" % pid, "cpu_pct": cpu}
                for pid, cpu in ((1, 80.0), (2, 12.0), (3, 0.3), (4, 0.0))]
    finding = {"id": "cpu_busy", "severity": "warn", "title": "CPUs 95 % busy", "threshold": "busy > 90 %",
               "evidence": {"busy_pct": 95.0}, "culprits": culprits}
    lines = render_text(snapshot, rates, [finding]).splitlines()
    assert lines[4] == "        who: w1[1] 80 % CPU; w2[2] 12 % CPU"
    finding["culprits"] = culprits[:1] + culprits[2:]
    lines = render_text(snapshot, rates, [finding]).splitlines()
    assert not any("who:" in line for line in lines)


def test_the_symptoms_a_finding_explains_fit_the_width(busy):
    """A cause's symptoms (findings.ranking folds them under it): their rules
    on one line, and in --full each title too, indented."""
    snapshot, rates, findings = busy
    symptoms = [{"id": "tcp_listen_overflow_%d" % i, "severity": "warn", "subject": None, "evidence": {},
                 "title": "listen queues overflowing: 2.72 overflows/s, 2.72 drops/s on 127.0.0.1:%d; " % i * 2}
                for i in range(9)]
    finding = dict(findings[0], symptoms=symptoms, culprits=[])
    lines = render_text(snapshot, rates, [finding]).splitlines()
    explains = lines[lines.index("FINDINGS 1") + 3]
    assert explains == "        explains: tcp_listen_overflow_0, tcp_listen_overflow_1 (+7 more)"
    lines = render_text(snapshot, rates, [finding], width=132, full=True).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("        explains: "))
    assert lines[start + 1:start + 10] == ["          " + (symptoms[i]["title"][:121] + "…") for i in range(9)]
    assert all(len(line) <= 132 for line in lines)


def test_a_filesystem_mounted_twice_is_shown_once(busy):
    snapshot, rates, findings = busy
    snapshot = copy.deepcopy(snapshot)
    root = {"mountpoint": "/", "device": "/dev/vda", "fstype": "ext4", "major": 254, "minor": 0,
            "size_bytes": 100 << 30, "free_bytes": 10 << 30, "avail_bytes": 5 << 30, "files": 1000,
            "files_free": 500, "readonly": False, "options": "rw"}
    data = dict(root, mountpoint="/srv/data/very/long/path/of/a/volume/mounted/here", device="/dev/vdb",
                minor=16, avail_bytes=50 << 30)
    snapshot.filesystems = [root, dict(root, mountpoint="/run/netns"), data]
    lines = render_text(snapshot, rates, findings, width=80, full=True).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("FS "))
    assert lines[start].split()[1:4] == ["top", "2", "of"]
    assert lines[start + 1].split() == ["/", "ext4", "95", "5.0GiB", "50", "also", "/run/netns"]
    assert lines[start + 2].startswith("         /srv/data/ver…e/mounted/here ext4    64 50.0GiB")
    assert not any(line.startswith("         /run/netns") for line in lines)
    folded = render_text(snapshot, rates, findings).splitlines()
    assert next(line for line in folded if line.startswith("FS ")).startswith("FS       top 1 of 2")


def test_a_table_shrinks_its_columns_then_leaves_out_the_least_useful():
    columns = [Column("pid"), Column("comm", "<", redundant=True), Column("user", "<", rank=3),
               Column("extra", rank=5), Column("path", "<", shrink=10, cut=cut_middle)]
    rows = [(1, "init", "root", "x", "/usr/lib/systemd/systemd --switched-root"),
            (22, "sshd", "nobody", "y", "/usr/sbin/sshd -D")]
    assert fit_table(columns, rows, 80) == ["pid comm user   extra path",
                                            "  1 init root       x /usr/lib/systemd/systemd --switched-root",
                                            " 22 sshd nobody     y /usr/sbin/sshd -D"]
    # The redundant comm goes first, then the path is cut in the middle...
    assert fit_table(columns, rows, 50)[1] == "  1 root       x /usr/lib/systemd… --switched-root"
    assert fit_table(columns, rows, 30)[1] == "  1 root       x /usr/l…d-root"
    # ... then "extra" and "user" go, and the path takes back their room.
    assert fit_table(columns, rows, 20) == ["pid path", "  1 /usr/li…hed-root", " 22 /usr/sb…/sshd -D"]
    assert cut_middle("/usr/lib/systemd", 9) == "/usr…temd"


# --- the command -------------------------------------------------------------

def diag(*args):
    return subprocess.run([sys.executable, "-m", "hostdiag", *args], capture_output=True,
                          env=dict(os.environ, PYTHONPATH=SRC))


def test_off_a_terminal_the_report_is_80_columns_and_one_screen():
    result = diag("--interval", "0.2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert len(lines) <= 40 and max(len(line) for line in lines) <= 80
    assert "\x1b[" not in result.stdout.decode()
    result = diag("--interval", "0.2", "--width", "132", "--full")
    lines = result.stdout.decode().splitlines()
    assert max(len(line) for line in lines) <= 132 and len(lines) > 40
    assert any(line.startswith("PROC CPU") for line in lines)


@pytest.mark.parametrize("value, message", [("39", "must be between 40 and 1000 columns, got 39"),
                                            ("1001", "must be between 40 and 1000 columns, got 1001"),
                                            ("wide", "must be a whole number of columns, got 'wide'")])
def test_a_bad_width_is_one_line(value, message, capsys):
    from hostdiag.apps.diag import main
    assert main(["--width", value]) == 2
    err = capsys.readouterr().err
    assert err == "diag: error: argument --width: %s\n" % message


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_under_a_terminal_the_report_takes_its_width():
    """`diag` in a 100×50 tmux pane lays the report out in 100 columns; the
    pane's lines are joined back where the terminal wrapped them (-J), so a
    line wider than the pane would show."""
    name = "hd-test-%s" % uuid.uuid4().hex[:8]
    command = ("env PYTHONPATH=%s %s -m hostdiag --interval 0.2; echo HD-REPORT-DONE; exec cat"
               % (SRC, sys.executable))
    subprocess.run(["tmux", "new-session", "-d", "-x", "100", "-y", "50", "-s", name, command], check=True)
    try:
        captured = []

        def done():
            result = subprocess.run(["tmux", "capture-pane", "-p", "-J", "-t", name], capture_output=True,
                                    text=True)
            captured[:] = result.stdout.splitlines()
            return "HD-REPORT-DONE" in captured
        wait_for(done, "the report in the pane", deadline_s=30, on_fail=lambda: "\n".join(captured))
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
    lines = [line.rstrip() for line in captured[:captured.index("HD-REPORT-DONE")]]
    assert lines[0].startswith("hostdiag  ") and any(line.startswith("PROC TOP") for line in lines)
    assert len(lines) <= 40
    assert 80 < max(len(line) for line in lines) <= 100, "\n".join(lines)


def test_the_screen_budget_leaves_out_the_highest_ranks_first():
    from hostdiag.views.report import ScreenBudget
    from hostdiag.views.text import Screen

    screen = Screen(False)
    budget = ScreenBudget(screen)
    for name, rank in (("a", 0), ("b", 2), ("c", 0), ("d", 5), ("e", 2), ("f", 5)):
        screen.add(name)
        if rank:
            budget.spare(rank)
    assert budget.kept() == 2
    budget.fit(4)
    assert screen.lines == ["a", "b", "c", "e"]
    budget = ScreenBudget(screen)
    budget.spare(1, 1)
    budget.fit(1)  # more to leave out than is spare: the kept lines stay
    assert screen.lines == ["a", "b"]
