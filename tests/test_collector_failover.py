"""Collectors sharing the fleet store (ClickHouse, a real server on loopback):
one killed mid-pull and another taking over; two sharding the agents between them.

Agents run at 0.2 s with a spool; collectors are real processes
(tests/agentproc.py); the server is tests/clickhouseproc.py's (skipped, saying
why, where clickhouse-server is not installed).
"""

import shutil
import signal
import tempfile

import pytest

from hostdiag.apps.collector import shard_of
from hostdiag.store.clickhouse import ClickHouseStore

from agentproc import AgentProcess, CollectorProcess, wait_for
from clickhouseproc import server_or_skip


@pytest.fixture
def server():
    server = server_or_skip()
    yield server
    server.stop()


@pytest.fixture
def processes():
    started = []
    yield started
    for proc in reversed(started):
        proc.stop(signal.SIGKILL)


@pytest.fixture
def workdir():
    path = tempfile.mkdtemp(prefix="hdfo-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _agent(processes, workdir, name):
    agent = AgentProcess(tempfile.mkdtemp(prefix=name + "-", dir=workdir))
    processes.append(agent)
    agent.start().wait_ready().close()
    return agent


def _stored(url, host, boot):
    """(seqs in the store, FINAL; rows of ``records`` as written, duplicates included)."""
    with ClickHouseStore(url, readonly=True) as store:
        seqs = store.seqs(host, boot)
        written = store.rows("SELECT count() AS n FROM records WHERE host = '%s' AND boot_id = '%s'" % (host, boot))
    return seqs, int(written[0]["n"])


def _wait_stored(url, host, boot, seq, collector):
    def reached():
        if collector.proc is not None and collector.proc.poll() is not None:
            raise AssertionError("collector exited with %s:\n%s" % (collector.proc.returncode, collector.log_tail()))
        try:
            seqs = _stored(url, host, boot)[0]
        except Exception:  # noqa: BLE001 - the tables appear when the collector has made them
            return False
        return bool(seqs) and seqs[-1] >= seq
    wait_for(reached, "the fleet store to hold seq %d of %s" % (seq, host), on_fail=collector.log_tail)


def test_a_collector_killed_mid_pull_is_replaced_without_gap_or_duplicate(server, processes, workdir):
    url = server.url("fleet")
    agents = {name: _agent(processes, workdir, name) for name in ("web1", "db1")}
    boots = {name: agent.info()["boot_id"] for name, agent in agents.items()}
    entries = [(name, agent.address) for name, agent in agents.items()]
    first = CollectorProcess(tempfile.mkdtemp(prefix="c1-", dir=workdir), entries, extra_args=["--store", url])
    processes.append(first)
    first.start()
    for name, agent in agents.items():
        _wait_stored(url, name, boots[name], agent.wait_newest(1)["newest_seq"] + 5, first)
    first.stop(signal.SIGKILL)  # mid-pull: its subscriptions were live
    killed_at = {name: _stored(url, name, boots[name])[0][-1] for name in agents}
    for name, agent in agents.items():
        agent.wait_newest(killed_at[name] + 10)  # the agents go on while no collector runs

    second = CollectorProcess(tempfile.mkdtemp(prefix="c2-", dir=workdir), entries, extra_args=["--store", url])
    processes.append(second)
    second.start()
    for name, agent in agents.items():
        _wait_stored(url, name, boots[name], agent.wait_newest(killed_at[name] + 15)["newest_seq"] + 3, second)
    assert second.stop() == 0

    for name, agent in agents.items():
        seqs, written = _stored(url, name, boots[name])
        agent_seqs = agent.seqs()
        assert seqs[0] == agent_seqs[0]
        assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a gap or a duplicate in %s: %s" % (name, seqs)
        assert written == len(seqs), "%s: %d rows written for %d seqs" % (name, written, len(seqs))
        assert seqs[-1] > killed_at[name] + 10  # the second collector resumed where the first stopped
    with ClickHouseStore(url, readonly=True) as store:
        assert store.gaps("web1") == [] and store.gaps("db1") == []


def test_two_collectors_share_the_agents_by_shard(server, processes, workdir):
    url = server.url("sharded")
    names = {}
    for i in range(50):  # one agent name in each of the two shards
        names.setdefault(shard_of("host%d" % i, 2), "host%d" % i)
        if len(names) == 2:
            break
    agents = {name: _agent(processes, workdir, name) for name in names.values()}
    entries = [(name, agent.address) for name, agent in agents.items()]
    collectors = {}
    for shard in (1, 2):
        collector = CollectorProcess(tempfile.mkdtemp(prefix="c%d-" % shard, dir=workdir), entries,
                                     extra_args=["--store", url, "--shard", "%d/2" % shard])
        processes.append(collector)
        collectors[shard] = collector.start()
    for shard, name in names.items():
        boot = agents[name].info()["boot_id"]
        _wait_stored(url, name, boot, agents[name].wait_newest(1)["newest_seq"] + 5, collectors[shard])
    for shard, collector in collectors.items():
        assert collector.stop() == 0
        log = collector.read_log()
        assert "collector started: 1 agents" in log
        other = names[3 - shard]
        assert "agent %s:" % other not in log and "agent %s:" % names[shard] in log
    with ClickHouseStore(url, readonly=True) as store:
        assert sorted(row["name"] for row in store.status()) == sorted(names.values())
