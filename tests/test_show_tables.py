"""The cgroup table and the network namespaces through the history: `diag
show` at a record without tables takes every table (processes, sockets,
cgroups, namespaces) from the nearest record that has them, with their rates;
`diag diff` compares the workloads; a real collector stores them as the
agent served them. Real samples of this host, real agent and collector."""

import pytest

from hostdiag.apps.history_readers import Moment, Rec
from hostdiag.derive.diff import NS, workload_changes, workload_view
from hostdiag.encode.wire import decode_msgpack, encode_msgpack
from hostdiag.sampler import Sampler
from hostdiag.sources.hostroot import HostRoot
from hostdiag.views.diff import workload_lines

from agentproc import AgentProcess, CollectorProcess


@pytest.fixture(scope="module")
def records():
    """Records 10 and 11 with the tables, 12 without: three real samples."""
    with Sampler(HostRoot()) as sampler:
        taken = [sampler.sample(), sampler.sample(), sampler.sample(tables=False)]
    return [Rec(s.meta.boot_id, seq, s.meta.wall_ns, decode_msgpack(encode_msgpack(s.to_dict())))
            for seq, s in zip((10, 11, 12), taken)]


def test_a_record_without_tables_is_shown_with_the_nearest_ones(records):
    tables_previous, tables, record = records
    assert record.snapshot["cgroups"] is None and record.snapshot["netns"] is None
    moment = Moment(record.wall_ns, record, tables, None, (tables, tables_previous))
    for section in ("processes", "sockets", "cgroups", "netns"):
        assert getattr(moment.snapshot, section) == tables.snapshot[section], section
    if tables.snapshot["cgroups"] is not None:
        paths = [row["path"] for row in tables.snapshot["cgroups"]["cgroups"]]
        assert sorted(moment.rates["cgroups"]) == sorted(paths)
    assert moment.rates["netns"] is not None and moment.rates["processes"]


def _cgroup_record(seq, usage, memory, extra=()):
    rows = [{"path": "/", "inode": 1, "cpu": {"usage_usec": 10 * usage}, "memory": {"current": 8 * memory}},
            {"path": "/system.slice/web.service", "inode": 2, "cpu": {"usage_usec": usage},
             "memory": {"current": memory}}]
    rows += [{"path": path, "inode": 3, "cpu": {"usage_usec": 0}, "memory": {"current": 1 << 20}} for path in extra]
    workloads = {row["path"]: {"kind": "unit", "name": row["path"].rsplit("/", 1)[-1]} for row in rows}
    return Rec("b1", seq, seq * NS, {"meta": {"mono_ns": seq * NS}, "cgroups": {"cgroups": rows, "workloads": workloads}})


def test_diff_names_the_workloads_whose_cpu_and_memory_changed():
    a = workload_view(_cgroup_record(10, 1_000_000, 100 << 20, ["/system.slice/old.service"]),
                      _cgroup_record(5, 500_000, 100 << 20, ["/system.slice/old.service"]))
    b = workload_view(_cgroup_record(30, 9_000_000, 300 << 20, ["/system.slice/new.service"]),
                      _cgroup_record(25, 5_000_000, 300 << 20, ["/system.slice/new.service"]))
    changes = workload_changes(a, b)
    web = changes["top"]["cpu"][0]
    assert (web["path"], web["a"], web["b"]) == ("/system.slice/web.service", pytest.approx(10.0),
                                                 pytest.approx(80.0))
    assert changes["made"] == ["/system.slice/new.service"] and changes["removed"] == ["/system.slice/old.service"]
    assert workload_changes(None, b) is None and workload_view(Rec("b1", 1, 1, {"cgroups": None}), None) is None
    lines = workload_lines(changes)
    assert lines[0] == "WORKLOADS" and lines[1] == "  cgroup tables of seq 10 and 30"
    assert lines[2].split() == ["top", "cpu", "web.service", "10.0%", "->", "80.0%"]
    assert "  made     new.service" in lines and "  removed  old.service" in lines


def test_diff_of_real_cgroup_tables(records):
    tables_previous, tables, _ = records
    if tables.snapshot["cgroups"] is None:
        pytest.skip("no cgroup hierarchy here")
    view = workload_view(tables, tables_previous)
    rows = [r for r in tables.snapshot["cgroups"]["cgroups"] if r["path"] != "/"]
    assert set(view["rows"]) == {r["path"] for r in rows}
    before = {r["path"]: r for r in tables_previous.snapshot["cgroups"]["cgroups"]}
    for row in rows:
        # A CPU share wherever both tables read the group's CPU time.
        counted = (row.get("cpu") or {}).get("usage_usec") is not None and \
            ((before.get(row["path"]) or {}).get("cpu") or {}).get("usage_usec") is not None
        assert (view["rows"][row["path"]]["cpu_pct"] is not None) == counted, row["path"]
    changes = workload_changes(view, view)
    assert changes["made"] == changes["removed"] == [] and changes["top"]["memory"]


def test_the_collector_stores_the_cgroup_table_and_the_namespaces(tmp_path):
    """A real agent taking the tables every 2nd sample, pulled once by a real
    collector: each stored record is the one the agent served, tables included."""
    agent = AgentProcess(str(tmp_path), agent={"table_every": 2})
    try:
        agent.start().wait_ready().close()
        info = agent.wait_newest(6)
        collector = CollectorProcess(str(tmp_path), [("web1", agent.address)])
        result = collector.run("--once")
        assert result.returncode == 0, result.stderr
        with agent.client() as client:
            served = {r.seq: r.snapshot for r in client.range(from_seq=1, to_seq=6)}
    finally:
        assert agent.stop() == 0, agent.log_tail()
    with collector.store() as store:
        stored = {r.seq: decode_msgpack(r.payload) for r in store.range("web1", info["boot_id"], 1, 6)}
    assert sorted(stored) == sorted(served) == list(range(1, 7))
    with_tables = [seq for seq, snapshot in stored.items() if snapshot["netns"] is not None]
    assert with_tables and with_tables == [seq for seq, snapshot in stored.items() if snapshot["agent"]["tables"]]
    for seq in with_tables:
        assert stored[seq]["netns"] == served[seq]["netns"] and stored[seq]["netns"]["namespaces"][0]["host"]
        assert stored[seq]["cgroups"] == served[seq]["cgroups"]
