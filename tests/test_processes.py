"""The process table against real processes: children with known names, command
lines, threads and memory, zombies, processes that vanish mid-scan, access
denied, pid reuse; the redaction rules; process rates from two real samples.

Every child is synchronised through pipes (it writes "ready" once set up) and is
killed and reaped by the fixture that started it.
"""

import json
import os
import pwd
import subprocess
import sys
import time

import pytest

from hostdiag.derive.process_rates import process_key, process_rates, top_processes
from hostdiag.sources.hostroot import HostRoot
from hostdiag.parsers import live_procpid, procpid
from hostdiag.parsers.redact import MASK, redact_argv, secret_name
from hostdiag.sources.problems import Problems
from hostdiag.sources.proc_pid import ProcessTable

# The child's program travels in the environment so that its command line is
# exactly BOOT plus the arguments a test gives.
BOOT = "import os; exec(os.environ['HD_CHILD'])"
CHILD = r"""
import ctypes, os, sys, threading, time

PR_SET_NAME = 15
comm = os.environ.get("HD_COMM")
if comm:
    ctypes.CDLL(None).prctl(PR_SET_NAME, comm.encode(), 0, 0, 0)
stop = threading.Event()
for _ in range(int(os.environ.get("HD_THREADS", "0"))):
    threading.Thread(target=stop.wait, daemon=True).start()
# Multiplying bytes fills them, so every page is resident.
ballast = b"\x01" * (int(os.environ.get("HD_ALLOC_MIB", "0")) << 20)
out = sys.stdout.buffer
out.write(b"ready\n")
out.flush()
for line in sys.stdin.buffer:
    command = line.strip()
    if command == b"exec":
        out.flush()
        os.execv(sys.executable, [sys.executable, "-c", os.environ["HD_BOOT"], "after-exec"])
    elif command == b"work":
        # 0.3 s of CPU, 16 MiB of fresh pages faulted in, 8 MiB written to disk.
        start = time.process_time()
        while time.process_time() - start < 0.3:
            pass
        pages = bytearray(16 << 20)
        for i in range(0, len(pages), 4096):
            pages[i] = 1
        with open(os.environ["HD_FILE"], "wb") as f:
            f.write(b"\x02" * (8 << 20))
            f.flush()
            os.fsync(f.fileno())
        out.write(b"done\n")
        out.flush()
"""

ODD_COMM = "a) (b\nc )d"     # 10 bytes: fits the kernel's 15
ODD_ARGV = ["two words", "(paren) )(", "line1\nline2", "--password=hunter2",
            "--token", "tok123", "https://user:pw@example.com/x", "plain"]
REDACTED_ODD_ARGV = ["two words", "(paren) )(", "line1\nline2", "--password=***",
                     "--token", "***", "https://user:***@example.com/x", "plain"]


class Child:
    """A child python process: ``proc`` is its Popen."""

    def __init__(self, proc):
        self.proc = proc
        self.pid = proc.pid

    def send(self, command, expect=b"done\n"):
        self.proc.stdin.write(command + b"\n")
        self.proc.stdin.flush()
        if expect is not None:
            line = self.proc.stdout.readline()
            assert line == expect, line

    def kill_and_reap(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def spawn(tmp_path):
    """Start children; every one is killed and reaped at teardown."""
    children = []

    def start(*argv, comm=None, threads=0, alloc_mib=0):
        env = dict(os.environ, HD_CHILD=CHILD, HD_BOOT=BOOT, HD_THREADS=str(threads),
                   HD_ALLOC_MIB=str(alloc_mib), HD_FILE=str(tmp_path / ("w%d" % len(children))))
        if comm is not None:
            env["HD_COMM"] = comm
        proc = subprocess.Popen([sys.executable, "-c", BOOT, *argv], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        child = Child(proc)
        children.append(child)
        assert proc.stdout.readline() == b"ready\n"
        return child

    yield start
    for child in children:
        if child.proc.poll() is None:
            child.proc.kill()
        child.proc.wait()
        child.proc.stdin.close()
        child.proc.stdout.close()


@pytest.fixture(params=["live", "pure"])
def table(request):
    """A ProcessTable over the live twin and one over the pure twin."""
    parsers = live_procpid if request.param == "live" else procpid
    return ProcessTable(HostRoot(), parsers=parsers)


def by_pid(section):
    return {record["pid"]: record for record in section["processes"]}


def scan(table, **kwargs):
    problems = Problems()
    section = table.scan(problems, **kwargs)
    return section, problems


# ---------------------------------------------------------------- identity and content

def test_child_with_odd_comm_and_arguments(table, spawn):
    child = spawn(*ODD_ARGV, comm=ODD_COMM)
    section, problems = scan(table)
    record = by_pid(section)[child.pid]
    assert record["comm"] == ODD_COMM
    assert record["cmdline"] == [sys.executable, "-c", BOOT] + REDACTED_ODD_ARGV
    assert record["ppid"] == os.getpid()
    assert record["state"] in ("S", "R")     # R until it blocks reading its stdin
    assert record["uid"] == os.geteuid()
    assert record["user"] == pwd.getpwuid(os.geteuid()).pw_name
    assert record["kernel_thread"] is False
    assert record["num_threads"] == 1
    assert record["start_time"] > 0
    assert record["fd_count"] is not None and record["fd_count"] >= 3
    assert record["cgroup"] is not None and record["cgroup"].startswith("/")
    assert record["oom_score_adj"] == by_pid(section)[os.getpid()]["oom_score_adj"]
    assert record["voluntary_ctxt_switches"] is not None
    assert record["nonvoluntary_ctxt_switches"] is not None
    assert record["read_bytes"] is not None and record["write_bytes"] is not None
    assert record["denied"] == []
    assert set(record) == set(procpid.RECORD_KEYS)
    assert not [e for e in problems.all() if e["kind"] == "malformed"]


def test_threads_and_memory(table, spawn):
    child = spawn("ballast", threads=7, alloc_mib=50)
    section, _ = scan(table)
    record = by_pid(section)[child.pid]
    assert record["num_threads"] == 8
    assert record["rss_bytes"] >= 50 << 20
    assert record["vsize_bytes"] >= record["rss_bytes"]
    assert section["counts"]["threads"] >= sum(r["num_threads"] for r in section["processes"]) > 8


def test_section_counts(table, spawn):
    spawn("counted")
    section, _ = scan(table)
    counts = section["counts"]
    assert counts["total"] == len(section["processes"])
    assert sum(counts["by_state"].values()) == counts["total"]
    assert counts["threads"] == sum(r["num_threads"] for r in section["processes"])
    pids = [r["pid"] for r in section["processes"]]
    assert pids == sorted(pids)


def test_kernel_threads_are_flagged(table):
    section, _ = scan(table)
    records = by_pid(section)
    assert records[2]["kernel_thread"] is True and records[2]["cmdline"] == []
    children_of_kthreadd = [r for r in section["processes"] if r["ppid"] == 2]
    assert children_of_kthreadd
    assert all(r["kernel_thread"] for r in children_of_kthreadd)
    assert records[os.getpid()]["kernel_thread"] is False


def test_zombie_is_listed(table):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # Wait for the exit without reaping: the child is now a zombie.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        section, _ = scan(table)
        record = by_pid(section)[proc.pid]
        assert record["state"] == "Z"
        assert record["cmdline"] == []
        assert record["kernel_thread"] is False
        assert section["counts"]["by_state"]["Z"] >= 1
    finally:
        proc.wait()


# ---------------------------------------------------------------- races

def test_reaped_pid_in_the_list_is_counted_vanished(table, spawn):
    alive = spawn("alive")
    gone = spawn("gone")
    gone.kill_and_reap()
    section, problems = scan(table, pids=[alive.pid, gone.pid, os.getpid()])
    assert [r["pid"] for r in section["processes"]] == [alive.pid, os.getpid()]
    assert section["vanished"] == 1
    assert problems.all() == []


@pytest.mark.parametrize("step", ["stat", "status", "io", "fd", "cmdline", "cgroup",
                                  "oom_score_adj"])
def test_process_reaped_mid_read_is_skipped(table, spawn, step):
    """The child dies and is reaped after its /proc/PID was opened, just before
    ``step`` is read; the scan skips it, counts it and goes on."""
    victim = spawn("victim")
    other = spawn("other")
    steps = []

    def hook(pid, name):
        steps.append((pid, name))
        if pid == victim.pid and name == step:
            victim.kill_and_reap()

    section, problems = scan(table, pids=[victim.pid, other.pid], race_hook=hook)
    assert (victim.pid, step) in steps
    assert [r["pid"] for r in section["processes"]] == [other.pid]
    assert section["vanished"] == 1
    assert problems.all() == []


def test_processes_exiting_while_a_large_scan_runs(table, spawn):
    """Victims are killed and reaped when the scanner reaches the first pid of
    its own listing, so they were listed but are gone when their turn comes."""
    victims = [spawn("victim", str(i)) for i in range(5)]
    survivors = [spawn("survivor", str(i)) for i in range(5)]
    first = []

    def hook(pid, name):
        if not first:
            first.append(pid)
            for victim in victims:
                victim.kill_and_reap()

    section, _ = scan(table, race_hook=hook)
    listed = by_pid(section)
    assert first and first[0] < min(v.pid for v in victims)
    assert not any(v.pid in listed for v in victims)
    assert all(s.pid in listed for s in survivors)
    assert section["vanished"] >= len(victims)


def test_access_denied_to_pid_1_io():
    """Even root may not read /proc/1/io on this machine (pid 1 is outside our
    reach for ptrace): its io fields are None, "io" is denied, the scan goes on."""
    root = HostRoot()
    try:
        root.read_proc("1", "io")
    except Exception as exc:
        assert getattr(exc, "kind", None) == "access_denied"
    else:
        pytest.skip("/proc/1/io is readable here; the denial is covered by the unprivileged test")
    section, problems = scan(ProcessTable(root), pids=[1, os.getpid()])
    record = by_pid(section)[1]
    assert record["read_bytes"] is None and record["write_bytes"] is None
    assert "io" in record["denied"]
    assert record["voluntary_ctxt_switches"] is not None
    assert section["denied"] == 1
    assert by_pid(section)[os.getpid()]["denied"] == []
    assert problems.all() == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to nobody")
def test_unprivileged_scanner_is_denied_io_of_root_processes(spawn):
    """A scanner running as nobody reads a root child: io is denied, the rest is there."""
    child = spawn("root-owned")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            section = ProcessTable(HostRoot()).scan(Problems(), pids=[child.pid])
            record = section["processes"][0]
            report = repr((record["denied"], record["read_bytes"], record["write_bytes"],
                           record["comm"], record["uid"], record["voluntary_ctxt_switches"],
                           section["denied"]))
            os.write(write_end, report.encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report
    denied, read_bytes, write_bytes, comm, uid, ctxt, count = eval(report)
    assert "io" in denied and read_bytes is None and write_bytes is None
    assert comm == "python" or comm.startswith("python")
    assert uid == 0 and ctxt is not None and count == 1


# ---------------------------------------------------------------- identity over time

def test_cached_facts_follow_an_exec_of_the_same_program(table, spawn):
    """comm, start time and uid stay the same across this exec; the argument
    area does not, so the command line is read again."""
    child = spawn("before-exec", comm="samename")
    first = by_pid(scan(table)[0])[child.pid]
    assert first["cmdline"][-1] == "before-exec"
    child.send(b"exec", expect=b"ready\n")
    second = by_pid(scan(table)[0])[child.pid]
    assert (second["comm"], second["start_time"]) == (first["comm"], first["start_time"])
    assert second["cmdline"] == [sys.executable, "-c", BOOT, "after-exec"]


def test_cache_is_dropped_for_pids_gone(table, spawn):
    child = spawn("short-lived")
    scan(table)
    assert child.pid in table._cache
    child.kill_and_reap()
    scan(table)
    assert child.pid not in table._cache


def _set_next_pid(root, pid):
    with open(root.proc("sys", "kernel", "ns_last_pid"), "w") as f:
        f.write(str(pid - 1))


def test_reused_pid_is_a_new_process(table, spawn):
    """Start A, scan, reap it, make the kernel hand A's pid to B (ns_last_pid),
    scan: B is a new process with its own facts, not A's cached ones."""
    root = HostRoot()
    if not os.access(root.proc("sys", "kernel", "ns_last_pid"), os.W_OK):
        pytest.skip("ns_last_pid is not writable")
    for _ in range(50):
        a = spawn("process-a")
        first = by_pid(scan(table)[0])[a.pid]
        a.kill_and_reap()
        try:
            _set_next_pid(root, a.pid)
        except OSError as exc:
            pytest.skip("cannot steer pid allocation: %s" % exc)
        b = spawn("process-b-with-a-longer-command-line")
        if b.pid == a.pid:
            break
        # Another process took the pid first; try again.
    else:
        pytest.skip("the pid was taken by others 50 times")
    second = by_pid(scan(table)[0])[b.pid]
    # A took tens of milliseconds to start and report, so B starts ticks later.
    assert second["start_time"] > first["start_time"]
    assert process_key(second) != process_key(first)
    assert second["cmdline"][-1] == "process-b-with-a-longer-command-line"
    rates = process_rates({"processes": [first]}, {"processes": [second]}, 1.0, 100)
    assert set(rates) == {process_key(second)}
    assert rates[process_key(second)]["cpu_pct"] is None


# ---------------------------------------------------------------- rates from real samples

def test_rates_from_two_samples_of_a_working_child(table, spawn):
    child = spawn("worker")
    t0 = time.monotonic()
    prev = scan(table)[0]
    child.send(b"work")
    cur = scan(table)[0]
    dt = time.monotonic() - t0
    ticks = os.sysconf("SC_CLK_TCK")
    rates = process_rates(prev, cur, dt, ticks)
    a, b = by_pid(prev)[child.pid], by_pid(cur)[child.pid]
    r = rates[process_key(b)]
    cpu_ticks = (b["utime"] + b["stime"]) - (a["utime"] + a["stime"])
    assert cpu_ticks >= 0.25 * ticks
    assert r["cpu_pct"] == pytest.approx(100.0 * cpu_ticks / ticks / dt)
    assert r["minflt_per_s"] >= 4096 / dt
    assert r["write_bytes_per_s"] >= (8 << 20) / dt
    switches = (b["voluntary_ctxt_switches"] + b["nonvoluntary_ctxt_switches"]
                - a["voluntary_ctxt_switches"] - a["nonvoluntary_ctxt_switches"])
    assert r["ctxsw_per_s"] == pytest.approx(switches / dt)
    top = top_processes(cur, rates, n=3)
    assert set(top) == {"cpu", "rss", "io", "faults"}
    assert all(len(rows) <= 3 for rows in top.values())
    # Other work on the host may outrank the child; with room for everyone it is listed.
    everyone = top_processes(cur, rates, n=len(cur["processes"]))
    for category, measure in (("cpu", "cpu_pct"), ("io", "io_bytes_per_s"),
                              ("faults", "faults_per_s")):
        values = [row[measure] for row in everyone[category]]
        assert values == sorted(values, reverse=True) and all(v > 0 for v in values)
        assert child.pid in [row["pid"] for row in everyone[category]]
    io_row = [row for row in everyone["io"] if row["pid"] == child.pid][0]
    assert io_row["write_bytes_per_s"] == r["write_bytes_per_s"]
    assert io_row["comm"] == b["comm"] and io_row["start_time"] == b["start_time"]


def test_rates_are_none_where_a_counter_went_backwards_or_is_missing():
    base = {"pid": 10, "start_time": 5, "comm": "x", "user": "u", "rss_bytes": 1,
            "utime": 100, "stime": 50, "read_bytes": 1000, "write_bytes": 2000,
            "minflt": 10, "majflt": 1, "voluntary_ctxt_switches": 3,
            "nonvoluntary_ctxt_switches": 4}
    later = dict(base, utime=150, stime=50, read_bytes=500, write_bytes=None, minflt=30,
                 majflt=1, voluntary_ctxt_switches=13, nonvoluntary_ctxt_switches=4)
    rates = process_rates({"processes": [base]}, {"processes": [later]}, 2.0, 100)
    r = rates["10:5"]
    assert r["cpu_pct"] == pytest.approx(25.0)
    assert r["read_bytes_per_s"] is None          # went backwards
    assert r["write_bytes_per_s"] is None         # None on one side (denied)
    assert r["minflt_per_s"] == pytest.approx(10.0)
    assert r["majflt_per_s"] == pytest.approx(0.0)
    assert r["ctxsw_per_s"] == pytest.approx(5.0)
    new = dict(base, pid=11)
    rates = process_rates({"processes": [base]}, {"processes": [later, new]}, 0.0, 100)
    assert all(v is None for v in rates["10:5"].values())
    assert all(v is None for v in rates["11:5"].values())
    assert process_rates(None, {"processes": [base]}, 1.0, 100)["10:5"]["cpu_pct"] is None


# ---------------------------------------------------------------- cgroup choice

@pytest.mark.parametrize("data, expected", [
    # this machine: v1 controllers plus an empty unified tree
    (b"9:name=systemd:/\n4:memory:/svc/a\n2:cpuacct:/\n1:cpu:/\n0::/\n", "/svc/a"),
    (b"4:memory:/\n3:cpu,cpuacct:/batch\n0::/\n", "/"),
    (b"3:cpu,cpuacct:/batch\n1:name=systemd:/user.slice\n", "/batch"),
    (b"1:name=systemd:/user.slice\n0::/\n", "/user.slice"),
    # pure v2, and hybrid with processes placed in the unified tree
    (b"0::/system.slice/ssh.service\n", "/system.slice/ssh.service"),
    (b"0::/\n", "/"),
    (b"4:memory:/docker/abc\n0::/system.slice/docker.service\n", "/system.slice/docker.service"),
    # a path may hold colons; a line without two colons is skipped
    (b"0::/a:b:c\n", "/a:b:c"),
    (b"garbage\n4:memory:/m\n", "/m"),
    (b"", None),
])
def test_cgroup_path_choice(data, expected):
    path, malformed = procpid.parse_cgroup(data)
    assert path == expected
    assert malformed == (1 if data.startswith(b"garbage") else 0)


# ---------------------------------------------------------------- redaction (docs/redaction.md)

REDACTION_TABLE = [
    # --name=value, -name=value, -Dname=value, env-style name=value
    (["app", "--password=hunter2"], ["app", "--password=***"]),
    (["app", "--db-password=a=b c"], ["app", "--db-password=***"]),
    (["app", "-passwd=x"], ["app", "-passwd=***"]),
    (["java", "-Djavax.net.ssl.keyStorePassword=abc", "-Dpassword=z", "-Xmx1g"],
     ["java", "-Djavax.net.ssl.keyStorePassword=***", "-Dpassword=***", "-Xmx1g"]),
    (["env", "DB_PASSWORD=foo", "MYSQL_PWD=bar", "GITHUB_TOKEN=t", "HOME=/root"],
     ["env", "DB_PASSWORD=***", "MYSQL_PWD=***", "GITHUB_TOKEN=***", "HOME=/root"]),
    (["aws", "--aws-secret-access-key=s", "--secret-key=k", "--apiKey=1", "--x-api-key=2"],
     ["aws", "--aws-secret-access-key=***", "--secret-key=***", "--apiKey=***",
      "--x-api-key=***"]),
    (["a", "--private_key=p", "--accesskey=q", "--credentials=r", "--auth=s", "--tokens=t"],
     ["a", "--private_key=***", "--accesskey=***", "--credentials=***", "--auth=***",
      "--tokens=***"]),
    # --name value: the next argument, whatever it looks like
    (["mysql", "--password", "x", "db"], ["mysql", "--password", "***", "db"]),
    (["app", "--token", "-starts-with-dash", "next"], ["app", "--token", "***", "next"]),
    (["app", "--no-auth", "-v"], ["app", "--no-auth", "***"]),
    (["app", "--password"], ["app", "--password"]),
    # names that are not secrets
    (["app", "--bypass=1", "--authority=x", "AUTHOR=me", "--keyfile=/k", "--key=/k.pem",
      "--compass", "c", "--passthrough=y", "-p", "5432"],
     ["app", "--bypass=1", "--authority=x", "AUTHOR=me", "--keyfile=/k", "--key=/k.pem",
      "--compass", "c", "--passthrough=y", "-p", "5432"]),
    # headers
    (["curl", "-H", "Authorization: Bearer abc", "-H", "X-Api-Key: k", "-H", "Accept: */*"],
     ["curl", "-H", "Authorization: ***", "-H", "X-Api-Key: ***", "-H", "Accept: */*"]),
    (["curl", "--cookie", "c=1", "-H", "Cookie: session=abc"],
     ["curl", "--cookie", "***", "-H", "Cookie: ***"]),
    # URL credentials and query parameters
    (["git", "clone", "https://x-access-token:ghp_123@github.com/a/b"],
     ["git", "clone", "https://x-access-token:***@github.com/a/b"]),
    (["psql", "postgres://u:p@ss@db:5432/x?sslmode=require&password=pw;token=t"],
     ["psql", "postgres://u:***@db:5432/x?sslmode=require&password=***;token=***"]),
    (["app", "--db-url=mysql://root:secret@localhost/db"],
     ["app", "--db-url=mysql://root:***@localhost/db"]),
    (["app", "https://user@example.com/", "ftp://host/x:y@z"],
     ["app", "https://user@example.com/", "ftp://host/x:y@z"]),
    # one argument holding a command line
    (["sh", "-c", "mysql --password secret db && echo api_key=5"],
     ["sh", "-c", "mysql --password *** db && echo api_key=***"]),
    (["psql", "host=x password=y  user=z"], ["psql", "host=x password=***  user=z"]),
    (["postgres: app db 10.0.0.1(5432) idle token=abc"],
     ["postgres: app db 10.0.0.1(5432) idle token=***"]),
    # nothing to redact
    ([], []),
    (["", "a b", "(x)", "line1\nline2"], ["", "a b", "(x)", "line1\nline2"]),
]


@pytest.mark.parametrize("argv, expected", REDACTION_TABLE)
def test_redaction_table(argv, expected):
    assert redact_argv(argv) == expected


@pytest.mark.parametrize("name, secret", [
    ("password", True), ("PASSWORD", True), ("DBPassword", True), ("keyStorePassword", True),
    ("db_passwd", True), ("MYSQL_PWD", True), ("oauth2-token", True), ("apikey", True),
    ("APIKey", True), ("api_keys", True), ("x-access-key", True), ("private.key", True),
    ("client_secret", True), ("credentials", True), ("basic-auth", True), ("passphrase", True),
    ("Set-Cookie", True),
    ("bypass", False), ("compass", False), ("author", False), ("AUTHORITY", False),
    ("key", False), ("keyfile", False), ("passthrough", False), ("tokenizer", False),
    ("cwd", False), ("", False),
])
def test_secret_names(name, secret):
    assert secret_name(name) is secret


def test_cmdline_parser_redacts_before_returning():
    data = b"mysql\0--password\0hunter2\0-h\0db\0"
    assert procpid.parse_cmdline(data) == (["mysql", "--password", MASK, "-h", "db"], 0)
    assert procpid.parse_cmdline(b"") == ([], 0)
    assert procpid.parse_cmdline(b"title --token abc") == (["title --token ***"], 0)
    assert procpid.parse_cmdline(b"a\0\0b\0") == (["a", "", "b"], 0)


def test_secrets_never_reach_the_section(table, spawn):
    child = spawn("--api-key", "sk-123", "DB_PASSWORD=letmein",
                  "https://admin:opensesame@db.example.com/")
    record = by_pid(scan(table)[0])[child.pid]
    text = repr(record)
    for secret in ("sk-123", "letmein", "opensesame"):
        assert secret not in text


def test_rates_skip_damaged_process_records():
    from hostdiag.derive.process_rates import process_rates, top_processes

    good = {"pid": 10, "start_time": 5, "utime": 1, "stime": 1, "comm": "x", "user": "root"}
    later = dict(good, utime=101)
    prev = {"processes": [good, "junk", {"pid": "x"}]}
    cur = {"processes": [later, None, {"pid": 3, "start_time": None}]}
    rates = process_rates(prev, cur, 1.0, 100)
    assert list(rates) == ["10:5"]
    assert rates["10:5"]["cpu_pct"] == 100.0
    assert [row["pid"] for row in top_processes(cur, rates)["cpu"]] == [10]


# ---------------------------------------------------------------- a recorded tree, end to end

def test_diag_lists_processes_whose_optional_files_are_absent():
    tree = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "processes-missing-files")
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    result = subprocess.run(
        [sys.executable, "-m", "hostdiag", "--proc-root", os.path.join(tree, "proc"),
         "--sys-root", os.path.join(tree, "sys"), "--rootfs", tree,
         "--interval", "0", "--format", "json"],
        capture_output=True, env=env, timeout=120)
    assert result.returncode == 0 and result.stderr == b"", result.stderr
    snapshot = json.loads(result.stdout)["snapshot"]
    section = snapshot["processes"]
    assert section["counts"] == {"total": 3, "threads": 4, "by_state": {"S": 3}}
    assert (section["vanished"], section["denied"]) == (0, 0)
    pids = {r["pid"]: r for r in section["processes"]}
    assert (pids[1]["read_bytes"], pids[1]["cgroup"], pids[1]["oom_score_adj"]) == (None, None, None)
    assert (pids[210]["read_bytes"], pids[210]["user"], pids[210]["cmdline"]) == \
        (4096000, "www-data", ["nginx: worker process"])
    assert pids[345]["oom_score_adj"] == -1000
    errors = sorted((e["path"].rsplit("/", 1)[-1], e["kind"], e["count"])
                    for e in snapshot["meta"]["errors"] if e["source"] == "processes")
    assert errors == [("cgroup", "missing", 2), ("io", "missing", 1), ("oom_score_adj", "missing", 2)]
