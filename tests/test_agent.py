"""The agent as a real process on real sockets: serving, subscribing, many
clients, a client that never reads, kill -9 and restart, signals, bad config.

Each agent runs with a short interval (0.2 s) in a temporary directory of its
own; readiness is polled on its socket with a bounded deadline, and every
process is stopped (or killed) at the end of its test.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from hostdiag.encode.delta import delta
from hostdiag.encode.wire import encode_msgpack
from hostdiag.transport import protocol as P
from hostdiag.transport.client import AgentClient, SnapshotRecord
from hostdiag.transport.framing import FrameDecoder, encode_frame
from hostdiag.transport.protocol import Error, ProtocolError

from agentproc import AGENT_MAIN, INTERVAL, AgentProcess, clean_env, write_toml


@pytest.fixture
def make_agent(workdir):
    agents = []

    def make(subdir="a", **sections):
        path = os.path.join(workdir, subdir)
        os.makedirs(path, exist_ok=True)
        agent = AgentProcess(path, **sections)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.kill()


@pytest.fixture(scope="module")
def running_agent():
    """One agent shared by the read-only tests of this module."""
    path = tempfile.mkdtemp(prefix="hd-", dir="/tmp")
    agent = AgentProcess(path)
    agent.start()
    try:
        agent.wait_ready().close()
        # A few records to read.
        wait_for_seq(agent, 8)
        yield agent
        assert agent.stop() == 0
        log = agent.read_log()
        assert "Traceback" not in log and "Exception in callback" not in log, log[-4000:]
    finally:
        agent.kill()
        shutil.rmtree(path, ignore_errors=True)


def wait_for_seq(agent, seq, deadline_s=20):
    deadline = time.monotonic() + deadline_s
    with agent.client() as client:
        while time.monotonic() < deadline:
            latest = client.latest()
            if latest is not None and latest.seq >= seq:
                return latest
            time.sleep(0.05)
    raise AssertionError("seq %d not reached" % seq)


def host_boot_id():
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


# -- serving ------------------------------------------------------------------


def test_info_reports_identity_retention_and_the_agent_itself(running_agent):
    with running_agent.client() as client:
        assert client.server["version"] == P.PROTOCOL_VERSION
        assert "subscribe" in client.server["capabilities"]
        info = client.info()
    assert info["type"] == "info"
    assert info["boot_id"] == host_boot_id()
    assert len(info["agent_id"]) == 32
    assert info["oldest_seq"] == 1 and info["newest_seq"] >= 8
    assert [b["boot_id"] for b in info["boots"]][-1] == info["boot_id"]
    assert info["gaps"] == []
    assert info["retention"]["ring_records"] > 0
    assert info["interval_s"] == INTERVAL
    me = info["agent"]
    assert me["pid"] == running_agent.proc.pid
    assert me["rss_bytes"] > 0
    # Start-up alone (the interpreter, the imports, eight samples) costs the agent CPU ticks.
    assert me["cpu"]["utime_ticks"] + me["cpu"]["stime_ticks"] > 0, me["cpu"]
    assert me["samples"] >= 8 and me["sample_s"]["max"] >= me["sample_s"]["avg"] > 0
    assert me["errors"] == 0
    assert me["spool"]["bytes"] > 0
    assert info["server"]["clients"] >= 1
    assert info["host"]["hostname"] == socket.gethostname()


def test_latest_and_range_by_seq_and_by_time(running_agent):
    with running_agent.client() as client:
        latest = client.latest()
        assert latest.snapshot["meta"]["wall_ns"] == latest.wall_ns
        agent_section = latest.snapshot["agent"]
        assert agent_section["interval_s"] == INTERVAL and agent_section["rss_bytes"] > 0

        page = client.range_page(from_seq=1, limit=3)
        assert [r.seq for r in page.records] == [1, 2, 3]
        assert page.more and page.next_seq == 4 and not page.gone

        records = list(client.range(from_seq=1, to_seq=latest.seq, page=3))
        assert [r.seq for r in records] == list(range(1, latest.seq + 1))
        assert all(r.snapshot["meta"]["wall_ns"] == r.wall_ns for r in records)

        by_time = client.range_page(from_ns=records[2].wall_ns, to_ns=records[4].wall_ns)
        assert [r.seq for r in by_time.records] == [3, 4, 5] and not by_time.more

        with pytest.raises(ProtocolError) as err:
            client.range_page(boot_id="00000000-0000-0000-0000-000000000000")
        assert err.value.code == Error.NOT_FOUND
        # The session survives a refused request.
        client.ping()


def test_subscribe_gives_consecutive_seqs_whose_deltas_apply_exactly(running_agent):
    with running_agent.client() as reader, running_agent.client(timeout=10) as client:
        start = reader.latest().seq - 3
        sub = client.subscribe(from_seq=start, full_every=1000, idle_timeout=10)
        got = []
        for item in sub:
            assert isinstance(item, SnapshotRecord), item
            got.append(item)
            if len(got) == 12:
                break
        assert [r.seq for r in got] == list(range(start, start + 12))
        assert got[0].full and not any(r.full for r in got[1:])
        stored = {r.seq: r for r in reader.range(from_seq=start, to_seq=start + 11)}
        for record in got:
            assert record.snapshot == stored[record.seq].snapshot
            assert record.wall_ns == stored[record.seq].wall_ns
        assert max(r.frame_bytes for r in got[1:]) < got[0].frame_bytes / 4

        sub.request_full()
        following = [next(sub) for _ in range(3)]
        assert any(r.full for r in following)
        assert [r.seq for r in following] == list(range(start + 12, start + 15))
        sub.unsubscribe()
        assert client.latest().seq >= start + 14


def test_tables_every_nth_sample_travel_as_changes_from_the_previous_table(make_agent):
    pytest.importorskip("hostdiag.sources.proc_pid")
    agent = make_agent(agent={"interval": 0.5, "table_every": 2, "budget": 0.5})
    agent.start()
    agent.wait_ready().close()
    with agent.client(timeout=30) as client:
        got = []
        for item in client.subscribe(full_every=1000, idle_timeout=30):
            got.append(item)
            if sum(1 for r in got if r.snapshot.get("processes") is not None) == 3:
                break
    with agent.client(timeout=30) as client:
        stored = {r.seq: r for r in client.range(from_seq=got[0].seq, to_seq=got[-1].seq)}
    assert [r.seq for r in got] == sorted(stored)
    for record in got:
        assert record.snapshot == stored[record.seq].snapshot
        tables = record.snapshot["agent"]["tables"]
        assert (record.snapshot["processes"] is not None) == tables
        assert (record.snapshot["netns"] is not None) == tables
    # A later table travels as a change from the table before, not from the
    # null of the record before it: smaller than that record's plain delta.
    table_before = got[0].snapshot["processes"] is not None
    for before, record in zip(got, got[1:]):
        if record.snapshot["processes"] is None:
            continue
        if table_before:
            plain = len(encode_msgpack(delta(before.snapshot, record.snapshot)))
            assert not record.full and record.frame_bytes < plain, (record.seq, record.frame_bytes, plain)
        table_before = True
    assert agent.stop() == 0


def test_two_hundred_concurrent_clients_are_all_served(running_agent):
    count = 200
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(30)
            s.connect(running_agent.sock_path)
            socks.append(s)
        results = [None] * count

        def serve(i):
            try:
                client = AgentClient(socks[i], timeout=30)
                record = client.latest()
                results[i] = record.seq if record is not None else "none"
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                results[i] = exc

        threads = [threading.Thread(target=serve, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        with running_agent.client() as observer:
            peak = observer.info()["server"]["clients"]
        for t in threads:
            t.join(60)
        failures = [r for r in results if not isinstance(r, int)]
        assert not failures, failures[:5]
        assert peak >= count  # all 200 (and the observer) connected at once
    finally:
        for s in socks:
            s.close()


# -- a client that never reads ------------------------------------------------


def test_a_client_that_never_reads_is_dropped_and_sampling_keeps_its_schedule(make_agent):
    agent = make_agent(server={"send_buffer_bytes": "64KiB", "read_timeout": 2})
    agent.start()
    agent.wait_ready().close()
    wait_for_seq(agent, 5)

    # The healthy subscriber, in a thread, timing every frame.
    arrivals = []
    stop = threading.Event()

    def follow():
        with agent.client() as client:
            for item in client.subscribe(idle_timeout=5):
                arrivals.append((time.monotonic(), item.seq))
                if stop.is_set():
                    return

    follower = threading.Thread(target=follow)
    follower.start()

    observer = agent.client()
    before = observer.info()
    # The slow client: asks for everything, whole every time, and reads nothing.
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.connect(agent.sock_path)
    slow.sendall(encode_frame({"type": "hello", "versions": [1]}))
    slow.sendall(encode_frame({"type": "subscribe", "from_seq": 1, "full_every": 1}))

    deadline = time.monotonic() + 60
    while observer.info()["server"]["clients_dropped"] < 1:
        assert time.monotonic() < deadline, "the slow client was never dropped"
        time.sleep(0.1)
    t0, seq0 = time.monotonic(), observer.latest().seq
    time.sleep(2.0)
    t1, seq1 = time.monotonic(), observer.latest().seq
    after = observer.info()
    stop.set()
    follower.join(10)
    observer.close()

    expected = (t1 - t0) / INTERVAL
    assert expected - 3 <= seq1 - seq0 <= expected + 2, (seq0, seq1, expected)
    assert after["agent"]["overruns"] == before["agent"]["overruns"]
    assert after["agent"]["errors"] == 0
    # The healthy subscriber was served all along, every record, on time.
    seqs = [s for _, s in arrivals]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    gaps = [b[0] - a[0] for a, b in zip(arrivals, arrivals[1:])]
    assert len(arrivals) >= 10 and max(gaps) < 1.0, max(gaps)

    # What the slow client finally reads ends with the server closing it.
    slow.settimeout(10)
    decoder = FrameDecoder(64 * 1024 * 1024)
    last = None
    while True:
        data = slow.recv(1 << 20)
        if not data:
            break
        for message in decoder.feed(data):
            last = message
    slow.close()
    if last is not None and last["type"] == P.ERROR:
        assert last["code"] == Error.SLOW_CLIENT
    assert agent.stop() == 0
    assert "slow_client" in agent.read_log()


# -- restarts, signals, configuration -------------------------------------------


def test_kill_9_then_restart_serves_history_and_continues_the_seq(make_agent):
    agent = make_agent()
    agent.start()
    agent.wait_ready().close()
    with agent.client() as client:
        for item in client.subscribe(from_seq=1, idle_timeout=10):
            if item.seq >= 12:
                break
        seen = item
    os.kill(agent.proc.pid, signal.SIGKILL)
    agent.proc.wait(10)
    agent.kill()

    agent.start()
    client = agent.wait_ready()
    with client:
        # Served at once from the spool, before the new process samples.
        assert client.latest().seq >= seen.seq
        newest = wait_for_seq(agent, seen.seq + 3)
        info = client.info()
        assert info["boot_id"] == seen.boot_id
        assert info["spool"]["corrupt_skipped"] == 0
        assert [g for g in info["gaps"] if g["boot_id"] == seen.boot_id] == []
        records = list(client.range(from_seq=1, to_seq=newest.seq, page=50))
        seqs = [r.seq for r in records]
        assert seqs == sorted(set(seqs)), "duplicate or unordered seqs"
        # kill -9 loses nothing that was served: every seq up to what the
        # subscriber saw is there, unchanged.
        assert seqs[:seen.seq] == list(range(1, seen.seq + 1))
        assert records[seen.seq - 1].snapshot == seen.snapshot
        for record in records:
            assert record.snapshot["meta"]["wall_ns"] == record.wall_ns
        # A client resuming where it stopped gets the next record, no gap, no duplicate.
        sub = client.subscribe(from_seq=seen.seq + 1, boot_id=seen.boot_id, idle_timeout=10)
        following = [next(sub) for _ in range(3)]
    assert [r.seq for r in following] == [seen.seq + 1, seen.seq + 2, seen.seq + 3]
    assert records[seen.seq].snapshot == following[0].snapshot
    assert agent.stop() == 0


def test_a_second_agent_on_the_same_spool_refuses_to_start(make_agent):
    first = make_agent()
    first.start()
    first.wait_ready().close()
    second = AgentProcess(first.dir)
    second.log_path = os.path.join(first.dir, "second.log")
    second.start()
    try:
        assert second.proc.wait(30) == 1
    finally:
        second.kill()
    log = second.read_log()
    assert "cannot start" in log and "spool" in log
    # The first one still serves.
    with first.client() as client:
        assert client.latest() is not None
    assert first.stop() == 0


def test_sd_notify_sighup_reload_and_sigterm_clean_stop(make_agent, workdir):
    notify_path = os.path.join(workdir, "notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(20)
    agent = make_agent()
    agent.start(env={"NOTIFY_SOCKET": notify_path})
    try:
        messages = []
        while not any("READY=1" in m for m in messages):
            messages.append(notify.recv(4096).decode())
        assert any("STATUS=" in m for m in messages)
        assert "WATCHDOG=1" in notify.recv(4096).decode()

        client = agent.wait_ready()
        agent.configure(agent={"interval": 0.3}, server={"full_every": 7})
        agent.signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while client.info()["interval_s"] != 0.3:
            assert time.monotonic() < deadline, agent.read_log()
            time.sleep(0.1)
        assert client.info()["server"]["limits"]["full_every"] == 7

        assert agent.stop() == 0
        with pytest.raises((ProtocolError, ConnectionError)) as err:
            client.latest()
        if isinstance(err.value, ProtocolError):
            assert err.value.code == Error.SHUTTING_DOWN
        client.close()
        while True:
            message = notify.recv(4096).decode()
            if "STOPPING=1" in message:
                break
    finally:
        notify.close()
    assert not os.path.exists(agent.sock_path)
    log = agent.read_log()
    assert "stopped after" in log and "Traceback" not in log


@pytest.mark.parametrize("settings,key", [
    ({"agent": {"interval": "fast"}}, "agent.interval"),
    ({"server": {"max_clientz": 3}}, "server.max_clientz"),
    ({"tcp": {"enabled": True}}, "tcp.token_file"),
])
def test_bad_config_is_one_line_naming_the_key_and_exit_2(workdir, settings, key):
    config = os.path.join(workdir, "bad.toml")
    write_toml(config, settings)
    done = subprocess.run([sys.executable, "-c", AGENT_MAIN, "--config", config], env=clean_env(),
                          capture_output=True, timeout=60)
    assert done.returncode == 2
    err = done.stderr.decode()
    assert err.count("\n") == 1 and key in err, err


def test_bad_option_is_a_usage_error(workdir):
    done = subprocess.run([sys.executable, "-c", AGENT_MAIN, "--interval", "0.001",
                           "--spool-dir", workdir, "--unix-path", os.path.join(workdir, "s")],
                          env=clean_env(), capture_output=True, timeout=60)
    assert done.returncode == 2
    assert "agent.interval" in done.stderr.decode() and done.stderr.decode().count("\n") == 1


def test_the_cgroup_table_keeps_to_the_agents_bounds(workdir):
    """agent.max_cgroups and agent.cgroup_depth reach the cgroup table the agent
    samples, and agent.max_netns the network namespaces."""
    agent = AgentProcess(workdir, agent={"table_every": 1, "max_cgroups": 2, "cgroup_depth": 1, "max_netns": 3})
    agent.start()
    try:
        client = agent.wait_ready()
        with client:
            record = client.latest()
        netns = record.snapshot["netns"]
        assert netns["limits"] == {"max_netns": 3} and netns["visited"] <= 3
        assert [ns["host"] for ns in netns["namespaces"]][:1] == [True]
        cgroups = record.snapshot["cgroups"]
        if cgroups is None:
            pytest.skip("no cgroup hierarchy here: %s" % record.snapshot["meta"]["errors"])
        assert (cgroups["max_cgroups"], cgroups["max_depth"]) == (2, 1)
        assert 1 <= len(cgroups["cgroups"]) <= 2
        assert all(row["path"].count("/") <= 1 for row in cgroups["cgroups"]), cgroups["cgroups"]
    finally:
        assert agent.stop() == 0, agent.log_tail()
