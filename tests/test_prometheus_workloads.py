"""The hostdiag_cgroup_* and hostdiag_netns_* families over a real sample of
this host with a namespace made by the test (and a synthetic one for the
bounds): parsers read every series back equal to the snapshot's counter, and
the label sets stay bounded whatever the number of cgroups."""

import copy
import os
import shutil
import subprocess
import uuid

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from hostdiag.encode import prometheus_workloads as W
from hostdiag.encode.prometheus import encode_metrics
from hostdiag.sampler import Sampler
from hostdiag.sources.hostroot import HostRoot
from hostdiag.transport.metrics_http import MetricsLimits, MetricsServer

from test_prometheus_encode import promtool, samples_of, value


@pytest.fixture(scope="module")
def sample():
    """A snapshot dict of this host taken while a named namespace exists."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("ip netns add needs root and iproute2")
    name = "hd-nx-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        with Sampler(HostRoot()) as sampler:
            snapshot = sampler.sample().to_dict()
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)
    return snapshot, name


def test_cgroup_and_namespace_series_equal_the_snapshot(sample):
    snapshot, name = sample
    text = encode_metrics(snapshot)
    found = samples_of(text)
    assert samples_of(encode_metrics(snapshot, openmetrics=True), parse_openmetrics)
    if shutil.which("promtool"):
        code, said = promtool(text)
        assert code == 0 or all("camelCase" in line or "abbreviated" in line for line in said.splitlines()), said
    (record,) = [ns for ns in snapshot["netns"]["namespaces"] if ns["name"] == name]
    assert value(found, "hostdiag_netns_tcp_retransmitted_segments_total", netns=name, workload="") == \
        record["snmp"]["Tcp"]["RetransSegs"]
    assert value(found, "hostdiag_netns", ) == snapshot["netns"]["total"]
    cgroups = snapshot["cgroups"]
    if cgroups is None:
        pytest.skip("no cgroup hierarchy here")
    assert value(found, "hostdiag_cgroups") == len(cgroups["cgroups"])
    series = {dict(labels)["cgroup"]: dict(labels) for n, labels in found if n == "hostdiag_cgroup_memory_bytes"}
    rows = {r["path"]: r for r in cgroups["cgroups"]}
    assert series and "/" not in series
    for path, labels in series.items():
        assert value(found, "hostdiag_cgroup_memory_bytes", **labels) == rows[path]["memory"]["current"]
        usage = (rows[path]["cpu"] or {}).get("usage_usec")
        if usage is not None:
            assert value(found, "hostdiag_cgroup_cpu_usage_seconds_total", **labels) == pytest.approx(usage / 1e6)


def _row(i):
    return {"path": "/system.slice/svc-%03d.service" % i, "inode": i,
            "cpu": {"usage_usec": 1000 * i, "throttled_usec": 0, "nr_periods": 0, "nr_throttled": 0,
                    "quota_usec": 50000, "period_usec": 100000},
            "memory": {"current": (300 - i) << 20, "max": 1 << 30, "events": {"oom_kill": 0}},
            "pids": {"current": 1},
            "pressure": {r: {"some": {"avg10": 0.0, "total_us": 2000 * i}, "full": {"avg10": 0.0, "total_us": 1000 * i}}
                         for r in ("cpu", "memory", "io")}}


def test_series_are_bounded_whatever_the_number_of_cgroups(sample):
    snapshot = copy.copy(sample[0])
    rows = [_row(i) for i in range(1, 301)]
    snapshot["cgroups"] = {"cgroups": rows, "workloads": {
        r["path"]: {"kind": "unit", "name": r["path"].rsplit("/", 1)[1]} for r in rows}}
    found = samples_of(encode_metrics(snapshot))
    labelled = [dict(labels) for n, labels in found if n == "hostdiag_cgroup_memory_bytes"]
    # The 20 using most CPU (the highest numbers) and the 20 holding most memory (the lowest).
    assert sorted(int(l["cgroup"][-11:-8]) for l in labelled) == list(range(1, 21)) + list(range(281, 301))
    assert labelled[0]["workload"].startswith("svc-") and labelled[0]["kind"] == "unit"
    assert value(found, "hostdiag_cgroup_cpu_limit_cpus", **labelled[0]) == 0.5
    first = int(labelled[0]["cgroup"][-11:-8])
    assert value(found, "hostdiag_cgroup_cpu_usage_seconds_total", **labelled[0]) == pytest.approx(first / 1000)
    assert value(found, "hostdiag_cgroups") == 300
    assert value(found, "hostdiag_cgroup_pressure_waiting_seconds_total", resource="io", **labelled[0]) == \
        pytest.approx(2 * first / 1000)
    assert value(found, "hostdiag_cgroup_pressure_stalled_seconds_total", resource="cpu", **labelled[0]) == \
        pytest.approx(first / 1000)
    assert samples_of(encode_metrics(snapshot, openmetrics=True), parse_openmetrics)
    assert len(W.summarize_workloads(snapshot)["cgroups"]["rows"]) == 2 * W.TOP_CGROUPS


def test_cgroups_and_namespaces_are_carried_between_table_samples(sample):
    snapshot = sample[0]
    server = MetricsServer(("127.0.0.1", 0), MetricsLimits(max_connections=1, max_request_bytes=1024, timeout=0.5))
    try:
        server.publish(snapshot)
        summary = server.latest.tables
        assert summary["workloads"]["netns"]["namespaces"]
        # The agent's samples between two tables have none of them.
        server.publish(dict(snapshot, processes=None, sockets=None, cgroups=None, netns=None))
        assert server.latest.snapshot["cgroups"] is snapshot["cgroups"]
        assert server.latest.snapshot["netns"] is snapshot["netns"]
        assert server.latest.tables is summary
    finally:
        server.close()
