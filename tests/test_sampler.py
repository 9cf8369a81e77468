"""The one Sampler that `diag` and the agent take their snapshots with, on the real /proc."""

import os
import socket
import time

from hostdiag.sampler import Sampler
from hostdiag.sources.hostroot import HostRoot
from hostdiag.views.report_tables import socket_inodes_shown


def test_tables_come_before_the_system_counters_that_date_the_snapshot():
    """The per-process rates are dated by meta.mono_ns: the process scan must
    end before it is taken (sampler/tables.py), so mono_ns comes after the
    whole table time has passed."""
    with Sampler(HostRoot()) as sampler:
        before = time.monotonic_ns()
        snapshot = sampler.sample()
        assert sampler.table_seconds is not None
        assert snapshot.meta.mono_ns - before >= sampler.table_seconds * 1e9
    assert snapshot.processes["counts"]["total"] > 0
    own = [p for p in snapshot.processes["processes"] if p["pid"] == os.getpid()]
    assert own, "this test's own process is missing from the table"
    assert snapshot.sockets["source"]
    assert snapshot.cgroups["cgroups"], "no cgroup row on a host with cgroups mounted"


def test_the_cgroup_table_names_the_workload_of_every_row_and_process():
    with Sampler(HostRoot()) as sampler:
        snapshot = sampler.sample()
    section = snapshot.cgroups
    workloads = section["workloads"]
    own = next(p for p in snapshot.processes["processes"] if p["pid"] == os.getpid())
    assert own["cgroup"] in workloads
    assert {row["path"] for row in section["cgroups"]} <= set(workloads)
    assert workloads["/"]["kind"] == "other" and workloads["/"]["name"] == "/"
    assert {w["kind"] for w in workloads.values()} <= {"unit", "scope", "slice", "user", "container", "pod", "other"}


def test_without_tables_the_sections_are_none():
    with Sampler(HostRoot()) as sampler:
        snapshot = sampler.sample(tables=False)
        assert (snapshot.processes, snapshot.sockets, snapshot.cgroups, sampler.table_seconds) == (None,) * 4
        assert snapshot.cpu is not None
    with Sampler(HostRoot(), tables=False) as sampler:
        snapshot = sampler.sample()
        assert (snapshot.processes, snapshot.sockets, snapshot.cgroups) == (None, None, None)
        sampler.add_socket_owners(snapshot, [1])  # no socket table: nothing to look up
        assert snapshot.sockets is None


def test_socket_owners_name_this_process_for_its_listener():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        inode = os.fstat(listener.fileno()).st_ino
        with Sampler(HostRoot()) as sampler:
            snapshot = sampler.sample()
            sampler.add_socket_owners(snapshot, [inode] + sorted(socket_inodes_shown(snapshot, None)))
        holders = snapshot.sockets["owners"][str(inode)]
        assert os.getpid() in {h["pid"] for h in holders}
    finally:
        listener.close()
