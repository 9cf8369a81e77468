"""CPU per scrape of our /metrics against node_exporter's own, same host, same run.

Ours: :class:`hostdiag.transport.metrics_http.MetricsServer` in a thread of this
process, fed real samples (system sections, process and socket tables, rates,
findings) taken beforehand by the real sampler; its CPU is the utime + stime of
that thread alone (``/proc/self/task/TID/schedstat``, ns), so the client's side of the
HTTP exchange is not counted. node_exporter's: the utime + stime of its whole
process (``/proc/PID/stat``), default collectors. Both over the same number of
scrapes on one keep-alive connection each.

Scenarios of ours:

* ``new sample each scrape``: a different sample, with tables of its own, is
  published before every scrape, so every scrape encodes (the agent's case: it
  samples every second, Prometheus scrapes every 15 s or more). The tables'
  summary is made by ``publish`` on the publisher's thread, once per new table
  (the agent takes tables every 5th sample): it is measured on its own, as
  ``table summary``;
* ``... as Prometheus asks``: the same with Prometheus's own Accept header
  (OpenMetrics) and gzip;
* ``... system sections only``: samples without the process and socket tables,
  the data node_exporter's default collectors cover;
* ``same sample``: scrapes of one sample, served from the encoded body (a second
  Prometheus of an HA pair, or scrapes more frequent than samples).

Also, as process CPU per call: our encoder (the table summary included)
against prometheus_client building the same families and calling its
exposition (``generate_latest``), and the table summary alone.
"""

import http.client
import os
import time
import urllib.parse

import pytest

from benchsupport import RESULTS
from hostdiag.derive.rates import derive_rates
from hostdiag.encode.prometheus import encode_metrics, summarize_tables
from hostdiag.findings.rules import evaluate
from hostdiag.sampler.system import SystemCollector
from hostdiag.sampler.tables import TableCollector, attach
from hostdiag.sources.problems import Problems
from hostdiag.transport.metrics_http import MetricsServer
from test_bench_snapshot import node_exporter, process_cpu_seconds  # noqa: F401 - a fixture, used by name

SCRAPES = int(os.environ.get("BENCH_METRICS_SCRAPES", "300"))
SAMPLES = 6
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Prometheus 2.42's Accept header for a scrape, and its Accept-Encoding.
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
              "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}
NODE_EXPORTER_CPU = {}


@pytest.fixture(scope="module")
def samples(host_root):
    """SAMPLES ``(snapshot dict, rates, findings)``, each with its tables."""
    taken = []
    with SystemCollector(host_root) as system, TableCollector(host_root) as tables:
        previous = None
        for _ in range(SAMPLES + 1):
            problems = Problems()
            processes, sockets, _ = tables.collect(problems)
            snapshot = attach(system.collect(), processes, sockets, problems)
            if previous is not None:
                rates = derive_rates(previous, snapshot)
                taken.append((snapshot.to_dict(), rates, evaluate(snapshot, rates)))
            previous = snapshot
    return taken


def thread_cpu_seconds(tid):
    """CPU time of one thread of this process: schedstat's nanoseconds on a
    CPU (a cached scrape costs less than one clock tick), else stat's ticks."""
    try:
        with open("/proc/self/task/%d/schedstat" % tid, "rb") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        with open("/proc/self/task/%d/stat" % tid, "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@pytest.fixture
def ours():
    server = MetricsServer(("127.0.0.1", 0))
    server.start()
    yield server
    server.close()


def scrape_loop(address, headers, before_each, cpu_now):
    """CPU seconds per scrape (``cpu_now()`` deltas) and the last body."""
    conn = http.client.HTTPConnection(*address, timeout=30)
    try:
        def one():
            conn.request("GET", "/metrics", headers=headers)
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200
            return body
        for i in range(3):  # warm: connection open, caches filled
            before_each(i)
            one()
        start = cpu_now()
        for i in range(SCRAPES):
            before_each(i)
            body = one()
        return (cpu_now() - start) / SCRAPES, body
    finally:
        conn.close()


def series_count(text):
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def record(label, cpu_s, note):
    RESULTS.cpu["/metrics: " + label] = {"cpu_s": cpu_s, "n": SCRAPES, "note": note}


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_node_exporter_cpu_per_scrape(node_exporter, encoding):  # noqa: F811 - the imported fixture
    url = urllib.parse.urlsplit(node_exporter["url"])
    cpu, body = scrape_loop((url.hostname, url.port), {"Accept-Encoding": encoding}, lambda i: None,
                            lambda: process_cpu_seconds(node_exporter["pid"]))
    if encoding == "gzip":
        import gzip
        body = gzip.decompress(body)
    NODE_EXPORTER_CPU[encoding] = (cpu, series_count(body.decode()))
    record("node_exporter, %s" % encoding, cpu, "%d series; its whole process" % NODE_EXPORTER_CPU[encoding][1])


SCENARIOS = {
    "new sample each scrape, text": ({}, "fresh", True),
    "new sample each scrape, as Prometheus asks (OpenMetrics, gzip)": (PROMETHEUS_HEADERS, "fresh", True),
    "new sample each scrape, system sections only, text": ({}, "fresh", False),
    "same sample, text": ({}, "same", True),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_ours_cpu_per_scrape(ours, samples, scenario):
    headers, mode, tables = SCENARIOS[scenario]
    feed = [s if tables else (dict(s[0], processes=None, sockets=None),) + s[1:] for s in samples]
    if mode == "same":
        ours.publish(*feed[0])
        before_each = lambda i: None  # noqa: E731
    else:
        before_each = lambda i: ours.publish(*feed[i % len(feed)])  # noqa: E731
    tid = ours._thread.native_id
    cpu, body = scrape_loop(ours.address, headers, before_each, lambda: thread_cpu_seconds(tid))
    if headers.get("Accept-Encoding") == "gzip":
        import gzip
        body = gzip.decompress(body)
    series = series_count(body.decode())
    ne = NODE_EXPORTER_CPU.get("gzip" if headers else "identity")
    note = "%d series" % series
    if tables:
        note += ", %d TCP rows, %d processes" % (len(feed[0][0]["sockets"]["tcp_table"]["rows"]),
                                                  len(feed[0][0]["processes"]["processes"]))
    if ne:
        note += "; %.2f x node_exporter's CPU (%d series)" % (cpu / ne[0], ne[1])
    record("ours, " + scenario, cpu, note)


def _client_families(text):
    """Our exposition as prometheus_client families, read back with its parser."""
    from prometheus_client.parser import text_string_to_metric_families

    return list(text_string_to_metric_families(text))


def test_prometheus_client_exposition_against_ours(samples):
    """Our encoder (the whole snapshot-to-text mapping) against the least
    prometheus_client needs for the same output: building its Metric
    families from samples already mapped, then generate_latest."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.metrics_core import Metric

    snapshot, rates, findings = samples[0]
    families = _client_families(encode_metrics(snapshot, rates, findings))

    class Families:
        def collect(self):
            for family in families:
                metric = Metric(family.name, family.documentation, family.type, family.unit)
                for s in family.samples:
                    metric.add_sample(s.name, s.labels, s.value)
                yield metric

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families())
    calls = 100

    def per_call(fn):
        for _ in range(3):
            fn()
        start = time.process_time()
        for _ in range(calls):
            fn()
        return (time.process_time() - start) / calls

    theirs = per_call(lambda: generate_latest(registry))
    mine = per_call(lambda: encode_metrics(snapshot, rates, findings))
    summarize = per_call(lambda: summarize_tables(snapshot, rates))
    RESULTS.cpu["/metrics: table summary, once per new table (publisher's thread)"] = {
        "cpu_s": summarize, "n": calls, "note": "%d TCP rows, %d processes" % (
            len(snapshot["sockets"]["tcp_table"]["rows"]), len(snapshot["processes"]["processes"]))}
    RESULTS.cpu["/metrics: encode, hostdiag (snapshot to text)"] = {
        "cpu_s": mine, "n": calls, "note": "%d TCP rows, %d processes" % (
            len(snapshot["sockets"]["tcp_table"]["rows"]), len(snapshot["processes"]["processes"]))}
    RESULTS.cpu["/metrics: encode, prometheus_client (families to text only)"] = {
        "cpu_s": theirs, "n": calls, "note": "%.1f x ours" % (theirs / mine)}
