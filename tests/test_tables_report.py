"""`diag` end to end with the process and socket tables, on this machine.

The test arranges what the report must show, with real processes and sockets:
a child burning CPU (``hd-burner``), a zombie child (``hd-zombie``), a listener
on 127.0.0.1 and an established loopback connection whose queues are full (its
peer never reads), so that it ranks among the connections shown. The host may
be loaded by other work: assertions are about what this test made, and
rankings are checked loosely (the burner among the top five by CPU, not first).
"""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def diag(*args, env=None):
    full_env = dict(os.environ)
    full_env.pop("NO_COLOR", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "hostdiag", *args],
                          capture_output=True, env=full_env, timeout=180)


def _state(pid):
    with open("/proc/%d/stat" % pid, "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0].decode()


def _cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return [a.decode("utf-8", "replace") for a in f.read().split(b"\0")[:-1]]


class Scene:
    """What the report must find: children, a listener and a full connection."""

    def __init__(self, tmp):
        self.children = []
        self.sockets = []
        burner, zombie = os.path.join(tmp, "hd-burner"), os.path.join(tmp, "hd-zombie")
        os.symlink("/bin/sh", burner)
        os.symlink("/bin/true", zombie)
        self.burner = self._spawn([burner, "-c", "while :; do :; done"])
        self.zombie = self._spawn([zombie])
        deadline = time.monotonic() + 30
        while _state(self.zombie.pid) != "Z":
            assert time.monotonic() < deadline, "the child never became a zombie"
            time.sleep(0.01)
        self.listener = self._socket(socket.socket())
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.client = self._socket(socket.create_connection(("127.0.0.1", self.port)))
        self.server, _ = self.listener.accept()
        self._socket(self.server)
        self.client_port = self.client.getsockname()[1]
        # Fill the send and receive queues: the server never reads.
        self.client.setblocking(False)
        try:
            while True:
                self.client.send(b"q" * 65536)
        except BlockingIOError:
            pass

    def _spawn(self, argv):
        child = subprocess.Popen(argv)
        self.children.append(child)
        return child

    def _socket(self, sock):
        self.sockets.append(sock)
        return sock

    def close(self):
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait()
        for sock in self.sockets:
            sock.close()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    made = Scene(str(tmp_path_factory.mktemp("scene")))
    yield made
    made.close()


@pytest.fixture(scope="module")
def document(scene):
    result = diag("--interval", "1.5", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def text(scene):
    result = diag("--interval", "1", "--full", "--width", "200")
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    return result.stdout.decode()


def _by_pid(document):
    return {r["pid"]: r for r in document["snapshot"]["processes"]["processes"]}


def test_processes_section_holds_this_process_with_its_command_line(document):
    section = document["snapshot"]["processes"]
    records = section["processes"]
    assert section["counts"]["total"] == len(records) > 1
    assert section["counts"]["threads"] >= len(records)
    assert sum(section["counts"]["by_state"].values()) == len(records)
    me = _by_pid(document)[os.getpid()]
    assert me["cmdline"][0] == _cmdline(os.getpid())[0]
    assert len(me["cmdline"]) == len(_cmdline(os.getpid()))
    assert me["ppid"] == os.getppid() and me["state"] in "RS"
    assert me["rss_bytes"] > 1 << 20 and me["utime"] + me["stime"] > 0


def test_zombie_child_is_listed(document, scene):
    zombie = _by_pid(document)[scene.zombie.pid]
    assert (zombie["state"], zombie["comm"], zombie["ppid"], zombie["cmdline"]) == (
        "Z", "hd-zombie", os.getpid(), [])


def test_sockets_section_holds_the_listener_and_the_connection(document, scene):
    sockets = document["snapshot"]["sockets"]
    assert sockets["source"] == "netlink"
    assert sockets["tcp_states"].get("ESTABLISHED", 0) >= 2
    assert sockets["tcp_states"].get("LISTEN", 0) >= 1
    listener = next(s for s in sockets["listeners"]
                    if s["local"] == "127.0.0.1" and s["local_port"] == scene.port)
    assert listener["backlog_max"] == 8 and listener["backlog"] == 0
    # Both ends are in the table; the full queues put them among the sockets decoded in full.
    col = {name: i for i, name in enumerate(sockets["tcp_table"]["fields"])}
    ports = {(row[col["local_port"]], row[col["remote_port"]]) for row in sockets["tcp_table"]["rows"]}
    if not sockets["tcp_table"]["dropped"]:
        assert {(scene.port, scene.client_port), (scene.client_port, scene.port)} <= ports
    server = next(s for s in sockets["tcp"]
                  if (s["local_port"], s["remote_port"]) == (scene.port, scene.client_port))
    assert server["state"] == "ESTABLISHED" and server["rqueue"] > 65536
    info = server["tcp_info"]
    for field in ("rtt", "rttvar", "rto", "cwnd", "ssthresh", "total_retrans", "bytes_received",
                  "min_rtt", "busy_time"):
        assert isinstance(info[field], int), field
    assert info["bytes_received"] >= server["rqueue"]
    assert server["skmem"]["rmem_alloc"] > 0 and server["cong"]


def test_owners_are_mapped_for_the_sockets_shown(document, scene):
    """Owners are looked up for the sockets the report shows, and only those.
    Other work on the host (full loopback queues of its own) may outrank this
    test's connection: its owner is checked when it is shown; test_sampler
    checks the lookup of a given socket on its own."""
    from hostdiag.model import Snapshot
    from hostdiag.views.report_tables import socket_inodes_shown

    sockets = document["snapshot"]["sockets"]
    owners = sockets["owners"]
    shown = socket_inodes_shown(Snapshot.from_dict(document["snapshot"]), document["rates"])
    assert owners and set(owners) <= {str(inode) for inode in shown}
    mine = {str(s["inode"]) for s in sockets["tcp"] if scene.port in (s["local_port"], s["remote_port"])}
    assert mine
    for inode in mine & set(owners):
        assert {"pid": os.getpid(), "comm": _comm(os.getpid())} in owners[inode]
    # Shown sockets only: far fewer than the table holds on a busy host.
    assert len(owners) <= 3 * 3 + 5


def _comm(pid):
    with open("/proc/%d/comm" % pid) as f:
        return f.read().rstrip("\n")


def test_process_rates_put_the_burner_among_the_top_five(document, scene):
    rates = document["rates"]["processes"]
    burner = _by_pid(document)[scene.burner.pid]
    key = "%d:%d" % (burner["pid"], burner["start_time"])
    assert set(rates[key]) == {"cpu_pct", "read_bytes_per_s", "write_bytes_per_s", "minflt_per_s",
                               "majflt_per_s", "ctxsw_per_s"}
    assert rates[key]["cpu_pct"] > 10
    top = sorted(rates.items(), key=lambda item: -(item[1]["cpu_pct"] or 0))[:5]
    assert key in [k for k, _ in top]
    me = _by_pid(document)[os.getpid()]
    assert rates["%d:%d" % (me["pid"], me["start_time"])]["ctxsw_per_s"] is not None


def test_cpu_findings_name_the_top_cpu_process(document):
    rates = document["rates"]["processes"]
    for finding in document["findings"]:
        if finding["id"] in ("cpu_busy", "cpu_one_busy"):
            first = finding["culprits"][0]
            best = max(r["cpu_pct"] or 0 for r in rates.values())
            assert abs(first["cpu_pct"] - best) < 0.01
            assert "%s[%d]" % (first["comm"], first["pid"]) in finding["title"]


def test_socket_rates_cover_the_connection(document, scene):
    rates = document["rates"]["sockets"]
    key = "inet 127.0.0.1:%d 127.0.0.1:%d #" % (scene.port, scene.client_port)
    mine = [v for k, v in rates.items() if k.startswith(key)]
    if document["snapshot"]["sockets"]["tcp_table"]["dropped"]:
        pytest.skip("the host has more sockets than the table keeps")
    assert mine == [{"retrans_per_s": 0.0, "bytes_acked_per_s": 0.0}]


def test_text_report_shows_every_table_block(text, scene):
    lines = text.splitlines()
    for label in ("PROCS", "PROC CPU", "PROC MEM", "PROC IO", "PROC FLT", "SOCKETS", "CONNS", "LISTEN"):
        assert any(line.startswith(label) for line in lines), label
    procs = next(line for line in lines if line.startswith("PROCS"))
    assert "Z " in procs
    zombies = next(line for line in lines if line.startswith("         zombies: "))
    if zombies.count(" of ") <= 3 and "more)" not in zombies:
        assert "hd-zombie[%d] of %s[%d]" % (scene.zombie.pid, _comm(os.getpid()), os.getpid()) in zombies
    conns = [line for line in lines if "127.0.0.1:%d" % scene.port in line and "->" in line]
    assert any("python" in line or "[%d]" % os.getpid() in line for line in conns)
    assert len(lines) <= 110


def test_no_tables_gives_null_sections():
    result = diag("--interval", "0.2", "--format", "json", "--no-tables")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["snapshot"]["processes"] is None and doc["snapshot"]["sockets"] is None
    assert doc["rates"]["processes"] is None and doc["rates"]["sockets"] is None
    assert not [e for e in doc["snapshot"]["meta"]["errors"] if e["source"] in ("processes", "sockets")]
    text = diag("--interval", "0", "--no-tables").stdout.decode()
    assert "PROCS    - (no process table)" in text and "SOCKETS  - (no socket table)" in text


def test_no_netlink_reads_sockets_from_proc(scene):
    doc = json.loads(diag("--interval", "0", "--format", "json", "--no-netlink").stdout)
    sockets = doc["snapshot"]["sockets"]
    assert sockets["source"] == "procfs"
    listener = next(s for s in sockets["listeners"] if s["local_port"] == scene.port)
    assert listener["backlog_max"] is None


@pytest.mark.parametrize("tree", ["debian12-6.18", "linux-2.6.18-old"])
def test_fixture_tree_gives_an_empty_process_table_not_an_error_storm(tree):
    base = os.path.join(FIXTURES, tree)
    args = ["--interval", "0", "--proc-root", os.path.join(base, "proc"),
            "--sys-root", os.path.join(base, "sys"), "--rootfs", base]
    result = diag("--format", "json", *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    doc = json.loads(result.stdout)
    snap = doc["snapshot"]
    assert snap["processes"] == {"processes": [], "counts": {"total": 0, "threads": 0, "by_state": {}},
                                 "vanished": 0, "denied": 0, "limits": {}}
    # No /proc/net/tcp in the recorded trees: the socket table is null, with one entry per file.
    assert snap["sockets"] is None
    table_errors = [e for e in snap["meta"]["errors"] if e["source"] in ("processes", "sockets")]
    assert {(e["source"], e["kind"]) for e in table_errors} == {("sockets", "missing")}
    assert len(table_errors) <= 2
    text = diag(*args)
    assert text.returncode == 0 and text.stderr == b""
    assert "PROCS    0 processes" in text.stdout.decode()


def test_version_lists_every_twin_pair():
    out = diag("version").stdout.decode()
    for module in ("hostdiag._proctext", "hostdiag._rtnetlink", "hostdiag._procpid", "hostdiag._sockdiag",
                   "hostdiag._cgroup", "hostdiag._tablecompare"):
        assert "  %s: " % module in out, out
