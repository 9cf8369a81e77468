"""The records of the snapshot's tables are declared once (hostdiag.model.records):
what the real collectors put in a live snapshot, what the parsers declare and
what docs/snapshot.md documents must all be exactly that declaration."""

import importlib
import os
import pathlib
import pkgutil
import re
import shutil
import socket
import subprocess
import uuid

import pytest

import hostdiag.parsers
from hostdiag.model import records as R
from hostdiag.sampler.system import SystemCollector
from hostdiag.sampler.tables import TableCollector, attach
from hostdiag.sources.hostroot import HostRoot
from hostdiag.sources.netns import NetnsTable
from hostdiag.sources.problems import Problems

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "snapshot.md"
FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
DECLARED = {name: value for name, value in vars(R).items() if isinstance(value, R.Record)}


def _type_errors(record_kind, records):
    """(field, value) pairs whose value is neither None nor of the declared type."""
    wrong = []
    for record in records:
        for field in record_kind.fields:
            value = record[field.name]
            if value is None:
                continue
            ok = isinstance(value, R.VALUE_TYPES[field.type])
            if field.type in ("int", "float") and isinstance(value, bool):
                ok = False
            if field.type == "list of str":
                ok = ok and all(isinstance(item, str) for item in value)
            if field.type == "list of int":
                ok = ok and all(isinstance(item, int) and not isinstance(item, bool) for item in value)
            if not ok:
                wrong.append((field.name, value))
    return wrong


def _check(record_kind, records):
    assert records, "no %s to check" % record_kind.kind
    assert {tuple(r) for r in records} == {record_kind.names}
    assert _type_errors(record_kind, records) == []


@pytest.fixture(scope="module")
def loopback_connection():
    """A listener on loopback and one accepted connection: the socket table has
    a listener and established rows with tcp_info."""
    with socket.create_server(("127.0.0.1", 0), backlog=8) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        client.sendall(b"x" * 1000)
        assert accepted.recv(1000)
        try:
            yield server.getsockname()[1]
        finally:
            client.close()
            accepted.close()


@pytest.fixture(scope="module", params=[True, False], ids=["netlink", "procfs"])
def live(request, loopback_connection):
    """A live snapshot with the tables, taken by the real collectors."""
    root = HostRoot()
    with SystemCollector(root, use_netlink=request.param) as system, \
            TableCollector(root, netlink=request.param) as tables:
        problems = Problems()
        taken = tables.collect(problems)
        return attach(system.collect(), taken.processes, taken.sockets, problems, cgroups=taken.cgroups)


def test_live_processes_carry_exactly_the_declared_fields(live):
    records = live.processes["processes"]
    _check(R.PROCESS, records)
    me = next(r for r in records if r["pid"] == os.getpid())
    assert me["ppid"] == os.getppid() and me["state"] in "RS" and me["kernel_thread"] is False


def test_live_socket_rows_and_listeners_carry_exactly_the_declared_fields(live, loopback_connection):
    table = live.sockets["tcp_table"]
    assert tuple(table["fields"]) == R.TCP_SOCKET_ROW.names
    assert {len(row) for row in table["rows"]} == {len(R.TCP_SOCKET_ROW.names)}
    rows = [dict(zip(table["fields"], row)) for row in table["rows"]]
    _check(R.TCP_SOCKET_ROW, rows)
    ours = [r for r in rows if r["local_port"] == loopback_connection or r["remote_port"] == loopback_connection]
    assert sorted(r["state"] for r in ours) == ["ESTABLISHED", "ESTABLISHED", "LISTEN"]
    _check(R.LISTENER, live.sockets["listeners"])
    assert loopback_connection in [l["local_port"] for l in live.sockets["listeners"]]


def test_live_links_disks_and_filesystems_carry_exactly_the_declared_fields(live):
    _check(R.LINK, live.network["links"])
    assert "lo" in [link["name"] for link in live.network["links"]]
    _check(R.DISK, live.disks)
    _check(R.FILESYSTEM, live.filesystems)


def test_live_cgroups_and_workloads_carry_exactly_the_declared_fields(live):
    rows = live.cgroups["cgroups"]
    _check(R.CGROUP, rows)
    assert "/" in [row["path"] for row in rows]
    assert all(isinstance(row["inode"], int) for row in rows)
    _check(R.WORKLOAD, list(live.cgroups["workloads"].values()))


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="ip netns add needs root and iproute2")
def test_live_network_namespaces_carry_exactly_the_declared_fields(live):
    name = "hd-rec-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        with NetnsTable(HostRoot(), max_netns=4096) as table:
            section = table.collect(Problems(), live.processes)
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)
    _check(R.NETNS, section["namespaces"])
    assert section["namespaces"][0]["host"] and section["namespaces"][0]["pids"]
    assert name in [ns["name"] for ns in section["namespaces"]]


@pytest.mark.parametrize("tree", sorted(p.name for p in FIXTURES.iterdir() if (p / "proc" / "diskstats").exists()))
def test_recorded_trees_give_the_declared_fields(tree):
    root = HostRoot(proc_root=str(FIXTURES / tree / "proc"), sys_root=str(FIXTURES / tree / "sys"))
    with SystemCollector(root, use_netlink=False) as system:
        snapshot = system.collect()
    if (FIXTURES / tree / "proc" / "diskstats").stat().st_size:
        assert snapshot.disks
    for record_kind, records in ((R.DISK, snapshot.disks), (R.FILESYSTEM, snapshot.filesystems),
                                 (R.LINK, snapshot.network["links"])):
        assert {tuple(r) for r in records} <= {record_kind.names}
        assert _type_errors(record_kind, records) == []


def _parser_constants(name):
    """Every value of a module-level ``name`` in the modules of hostdiag.parsers."""
    found = []
    for module in pkgutil.iter_modules(hostdiag.parsers.__path__):
        value = getattr(importlib.import_module("hostdiag.parsers." + module.name), name, None)
        if value is not None and value not in found:
            found.append(value)
    return found


def test_parser_field_lists_equal_the_declaration():
    assert _parser_constants("RECORD_KEYS") == [R.PROCESS.names]
    assert _parser_constants("ROW_FIELDS") == [R.TCP_SOCKET_ROW.names]
    (disk_fields,) = _parser_constants("DISK_FIELDS")
    assert ("major", "minor", "name") + tuple(disk_fields) + ("is_partition", "parent") == R.DISK.names


def _documented_records():
    """{declared name: [(field, type, unit, meaning)]} from docs/snapshot.md: the
    table after each "declared as `NAME` in `src/hostdiag/model/records.py`"."""
    lines = DOCS.read_text().splitlines()
    documented = {}
    for i, line in enumerate(lines):
        match = re.search(r"[Dd]eclared as `(\w+)` in `src/hostdiag/model/records\.py`:", line)
        if not match:
            continue
        rows = []
        for row in lines[i + 1:]:
            if not row.strip() and not rows:
                continue
            if not row.startswith("|"):
                break
            cells = [c.strip() for c in row.strip().strip("|").split("|")]
            if cells[0] == "field" or set(cells[0]) <= {"-"}:
                continue
            assert len(cells) == 4, row
            rows.append((cells[0].strip("`"), cells[1], cells[2], cells[3]))
        assert match.group(1) not in documented, "documented twice: %s" % match.group(1)
        documented[match.group(1)] = rows
    return documented


def test_docs_document_exactly_the_declared_fields():
    documented = _documented_records()
    assert sorted(documented) == sorted(DECLARED)
    for name, record_kind in DECLARED.items():
        assert documented[name] == [tuple(f) for f in record_kind.fields], name


def test_a_record_declaring_a_field_twice_or_an_unknown_type_is_refused():
    with pytest.raises(ValueError, match="twice"):
        R.Record("x", (("a", "int", "", "m"), ("a", "int", "", "m")))
    with pytest.raises(ValueError, match="unknown type of b"):
        R.Record("x", (("b", "complex", "", "m"),))
