"""The Prometheus encoder over real samples of this host: promtool accepts the
text, prometheus_client's parsers (text and the strict OpenMetrics one) read
every sample back equal to the snapshot's counter in node_exporter's unit, and
the hostdiag_* families keep their bounds."""

import copy
import math
import re
import shutil
import subprocess

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from hostdiag.derive.rates import derive_rates
from hostdiag.encode import prometheus as P
from hostdiag.encode.prometheus import encode_metrics
from hostdiag.findings.rules import evaluate
from hostdiag.sampler.system import SystemCollector
from hostdiag.sampler.tables import TableCollector, attach
from hostdiag.sources.hostroot import HostRoot
from hostdiag.sources.problems import Problems

# What promtool's linter says about names node_exporter itself exposes (the
# kernel's CamelCase keys of meminfo, snmp and netstat; vmstat's "nr_..._pages"):
# promtool reports the same for node_exporter's own output. Anything else fails.
INHERITED_LINT = re.compile(
    r"(node_memory|node_netstat|node_vmstat|node_sockstat)_\S+ metric names should "
    r"(be written in 'snake_case' not 'camelCase'|not contain abbreviated units)")


def take(system, tables):
    problems = Problems()
    processes, sockets, _ = tables.collect(problems)
    return attach(system.collect(), processes, sockets, problems)


@pytest.fixture(scope="module")
def sample():
    """``(snapshot dict, rates, findings)`` of two real samples of this host."""
    root = HostRoot()
    with SystemCollector(root) as system, TableCollector(root) as tables:
        first = take(system, tables)
        second = take(system, tables)
    rates = derive_rates(first, second)
    return second.to_dict(), rates, evaluate(second, rates)


def samples_of(text, parser=parse_text):
    """``{(name, sorted label pairs): value}`` of every sample, asserting none repeats."""
    found = {}
    for family in parser(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in found, key
            found[key] = s.value
    return found


def value(found, name, **labels):
    return found[(name, tuple(sorted((k, str(v)) for k, v in labels.items())))]


def promtool(text):
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    return result.returncode, (result.stdout + result.stderr).strip()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing (Debian package prometheus)")
def test_promtool_accepts_the_text(sample):
    code, output = promtool(encode_metrics(*sample))
    # 0: clean; 3: lint problems only (1 would be a parse error).
    assert code in (0, 3), output
    problems = [line for line in output.splitlines() if line]
    assert all(INHERITED_LINT.fullmatch(line) for line in problems), problems


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing (Debian package prometheus)")
def test_promtool_sees_a_broken_exposition():
    """The check above can fail: a sample line without a value is a parse error."""
    code, output = promtool("# TYPE x gauge\nx{a=\"b\"}\n")
    assert code == 1, output


def test_text_and_openmetrics_carry_the_same_samples(sample):
    text = samples_of(encode_metrics(*sample))
    om_text = encode_metrics(*sample, openmetrics=True)
    assert om_text.endswith("\n# EOF\n")
    om = samples_of(om_text, parse_openmetrics)
    # The same series; only the histograms' count and sum change names (_gcount, _gsum).
    renamed = {(name.replace("_gcount", "_count").replace("_gsum", "_sum"), labels): v
               for (name, labels), v in om.items()}
    assert renamed.keys() == text.keys()
    for key, v in text.items():
        assert renamed[key] == pytest.approx(v, rel=1e-15), key


def test_openmetrics_types_and_units(sample):
    families = {f.name: f for f in parse_openmetrics(encode_metrics(*sample, openmetrics=True))}
    cpu = families["node_cpu_seconds"]
    assert (cpu.type, cpu.unit) == ("counter", "seconds")
    assert {s.name for s in cpu.samples} == {"node_cpu_seconds_total"}
    assert families["node_netstat_Tcp_InSegs"].type == "unknown"
    assert families["node_memory_MemTotal_bytes"].unit == "bytes"
    assert families["hostdiag_tcp_connection_rtt_seconds"].type == "gaugehistogram"
    for family in families.values():
        if family.unit:
            assert family.name.endswith("_" + family.unit), family.name


def test_a_table_summary_given_or_made_gives_the_same_text(sample):
    snapshot, rates, findings = sample
    tables = P.summarize_tables(snapshot, rates)
    assert encode_metrics(snapshot, rates, findings, tables=tables) == encode_metrics(snapshot, rates, findings)


def test_cpu_memory_vmstat_in_node_exporter_units(sample):
    snapshot = sample[0]
    found = samples_of(encode_metrics(*sample))
    hz = snapshot["meta"]["clock_ticks"]
    for key, states in snapshot["cpu"]["cpus"].items():
        for mode in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"):
            assert value(found, "node_cpu_seconds_total", cpu=key[3:], mode=mode) == pytest.approx(states[mode] / hz)
    assert value(found, "node_context_switches_total") == snapshot["cpu"]["ctxt"]
    assert value(found, "node_boot_time_seconds") == snapshot["cpu"]["btime"]
    assert value(found, "node_load1") == snapshot["cpu"]["loadavg"]["load1"]
    meminfo = snapshot["memory"]["meminfo"]
    assert value(found, "node_memory_MemTotal_bytes") == meminfo["MemTotal"]
    assert value(found, "node_memory_Active_anon_bytes") == meminfo["Active(anon)"]
    assert value(found, "node_memory_HugePages_Total") == meminfo["HugePages_Total"]
    for key, v in snapshot["memory"]["vmstat"].items():
        assert value(found, "node_vmstat_" + key) == v


def test_netstat_full_set(sample):
    network = sample[0]["network"]
    found = samples_of(encode_metrics(*sample))
    count = 0
    for section in ("snmp", "netstat"):
        for proto, fields in network[section].items():
            for field, v in fields.items():
                assert value(found, "node_netstat_%s_%s" % (proto, field)) == v
                count += 1
    for key, v in (network["snmp6"] or {}).items():
        six = key.index("6") + 1
        assert value(found, "node_netstat_%s_%s" % (key[:six], key[six:])) == v
    # node_exporter's default set is inside ours.
    for name in ("node_netstat_Tcp_RetransSegs", "node_netstat_TcpExt_ListenOverflows", "node_netstat_Udp_InErrors",
                 "node_netstat_IpExt_InOctets", "node_netstat_Icmp_InMsgs", "node_netstat_Ip_Forwarding"):
        assert (name, ()) in found
    assert count > 100


def test_links_disks_filesystems(sample):
    snapshot = sample[0]
    found = samples_of(encode_metrics(*sample))
    for link in snapshot["network"]["links"]:
        stats, device = link["stats"], link["name"]
        assert value(found, "node_network_receive_bytes_total", device=device) == stats["rx_bytes"]
        assert value(found, "node_network_transmit_packets_total", device=device) == stats["tx_packets"]
        assert value(found, "node_network_mtu_bytes", device=device) == link["mtu"]
        assert value(found, "node_network_up", device=device) == (link["operstate"] == "up")
        if snapshot["network"]["link_source"] == "netlink":
            assert value(found, "node_network_receive_drop_total", device=device) == \
                stats["rx_dropped"] + stats["rx_missed_errors"]
    disks = [d for d in snapshot["disks"] if not d["is_partition"] and not re.match(r"(ram|loop|fd)\d+$", d["name"])]
    for disk in disks:
        assert value(found, "node_disk_read_bytes_total", device=disk["name"]) == disk["sectors_read"] * 512
        assert value(found, "node_disk_io_time_seconds_total", device=disk["name"]) == \
            pytest.approx(disk["io_time_ms"] / 1000)
    assert {labels for name, labels in found if name == "node_disk_io_now"} == \
        {(("device", d["name"]),) for d in disks}
    for fs in snapshot["filesystems"]:
        labels = dict(device=fs["device"], fstype=fs["fstype"], mountpoint=fs["mountpoint"])
        assert value(found, "node_filesystem_readonly", **labels) == fs["readonly"]
        if fs["size_bytes"] is not None:
            assert value(found, "node_filesystem_avail_bytes", **labels) == fs["avail_bytes"]
            assert value(found, "node_filesystem_device_error", **labels) == 0


def test_sockets_and_processes_bounded(sample):
    snapshot = sample[0]
    found = samples_of(encode_metrics(*sample))
    states = snapshot["sockets"]["tcp_states"]
    assert value(found, "node_tcp_connection_states", state="listen") == states.get("LISTEN", 0)
    table = snapshot["sockets"]["tcp_table"]
    rows = [dict(zip(table["fields"], row)) for row in table["rows"]]
    with_info = [r for r in rows if r["rtt"]]
    assert value(found, "hostdiag_tcp_connection_rtt_seconds_count") == len(with_info)
    assert value(found, "hostdiag_tcp_connection_rtt_seconds_bucket", le="0.001") == \
        sum(1 for r in with_info if r["rtt"] <= 1000)
    top = [labels for name, labels in found if name == "hostdiag_top_process_resident_memory_bytes"]
    assert 0 < len(top) <= P.TOP_PROCESSES
    biggest = max(snapshot["processes"]["processes"], key=lambda r: r["rss_bytes"] or 0)
    assert value(found, "hostdiag_top_process_resident_memory_bytes", comm=biggest["comm"],
                 pid=biggest["pid"]) == biggest["rss_bytes"]


def test_findings_become_series(sample):
    snapshot, rates, _ = sample
    findings = [{"id": "disk_full", "severity": "crit", "subject": "/var"},
                {"id": "disk_full", "severity": "crit", "subject": "/var"},
                {"id": "load_high", "severity": "warn", "subject": None}]
    found = samples_of(encode_metrics(snapshot, rates, findings))
    active = {labels for name, labels in found if name == "hostdiag_finding_active"}
    assert active == {(("id", "disk_full"), ("severity", "crit"), ("subject", "/var")),
                      (("id", "load_high"), ("severity", "warn"), ("subject", ""))}
    assert value(found, "hostdiag_findings", severity="crit") == 2
    many = [{"id": "f%d" % i, "severity": "warn", "subject": None} for i in range(P.MAX_FINDINGS + 5)]
    found = samples_of(encode_metrics(snapshot, rates, many))
    assert sum(1 for name, _ in found if name == "hostdiag_finding_active") == P.MAX_FINDINGS


def test_labels_are_escaped(sample):
    snapshot = copy.deepcopy(sample[0])
    odd = 'a "quoted"\\name\nline'
    snapshot["processes"]["processes"][0].update(comm=odd, rss_bytes=1 << 50)
    snapshot["filesystems"][0]["mountpoint"] = "/mnt/with space/" + odd
    for openmetrics, parser in ((False, parse_text), (True, parse_openmetrics)):
        found = samples_of(encode_metrics(snapshot, openmetrics=openmetrics), parser)
        assert any(dict(labels).get("comm") == odd for name, labels in found)
        assert any(dict(labels).get("mountpoint") == "/mnt/with space/" + odd for name, labels in found)


def test_histogram_buckets_from_known_rtts(sample):
    snapshot = copy.deepcopy(sample[0])
    fields = snapshot["sockets"]["tcp_table"]["fields"]
    template = dict(zip(fields, snapshot["sockets"]["tcp_table"]["rows"][0]))
    rtts_us = [50, 100, 101, 999, 1000, 3_000_000, 0, None]
    rows = []
    for i, rtt in enumerate(rtts_us):
        row = dict(template, state="ESTABLISHED", rtt=rtt, total_retrans=None if rtt is None else i)
        rows.append([row[f] for f in fields])
    rows.append([dict(template, state="LISTEN", rtt=0, total_retrans=0)[f] for f in fields])
    snapshot["sockets"]["tcp_table"]["rows"] = rows
    found = samples_of(encode_metrics(snapshot))
    bucket = lambda le: value(found, "hostdiag_tcp_connection_rtt_seconds_bucket", le=le)  # noqa: E731
    assert (bucket("0.0001"), bucket("0.0005"), bucket("0.001"), bucket("2.5"), bucket("+Inf")) == (2, 3, 5, 5, 6)
    assert value(found, "hostdiag_tcp_connection_rtt_seconds_sum") == pytest.approx(sum(rtts_us[:-2]) / 1e6)
    assert value(found, "hostdiag_tcp_connection_retransmits_bucket", le="0.0") == 1
    assert value(found, "hostdiag_tcp_connection_retransmits_count") == 6


def test_missing_sections_and_odd_values(sample):
    snapshot = copy.deepcopy(sample[0])
    for section in ("pressure", "disks", "filesystems", "processes", "sockets"):
        snapshot[section] = None
    snapshot["memory"]["meminfo"]["MemAvailable"] = None
    snapshot["memory"]["vmstat"]["bad key!"] = 1
    snapshot["memory"]["vmstat"]["nr_test_nan"] = math.nan
    snapshot["network"]["links"][0]["stats"]["rx_bytes"] = None
    text = encode_metrics(snapshot)
    found = samples_of(text)
    names = {name for name, _ in found}
    assert not any(n.startswith(("node_disk_", "node_filesystem_", "node_pressure_", "hostdiag_top_process"))
                   for n in names)
    assert "node_memory_MemAvailable_bytes" not in names  # missing, never 0
    assert "bad key!" not in text
    assert math.isnan(value(found, "node_vmstat_nr_test_nan"))
    device = snapshot["network"]["links"][0]["name"]
    assert ("node_network_receive_bytes_total", (("device", device),)) not in found
    assert samples_of(encode_metrics({"meta": {}})) == {
        ("hostdiag_build_info", (("parser_impl", ""),)): 1.0,
        ("hostdiag_findings", (("severity", "crit"),)): 0.0,
        ("hostdiag_findings", (("severity", "warn"),)): 0.0}


def test_agent_and_server_counters(sample):
    snapshot = dict(sample[0], agent={
        "cpu": {"utime_ticks": 150, "stime_ticks": 50}, "rss_bytes": 12345, "samples": 9, "overruns": 2,
        "missed_ticks": 3, "errors": 0, "clients_dropped": 1, "clients": 2, "started_wall_ns": 1_700_000_000 * 10**9,
        "sample_s": {"last": 0.01, "avg": 0.02, "max": 0.5}, "spool": {"bytes": 4096, "degraded": None}})
    found = samples_of(encode_metrics(snapshot, server_stats={"scrapes": {"text": 4}, "gzipped": 1, "encodes": 2, "connections": 1,
                                                              "rejected": {"timeout": 5}}))
    hz = P.os.sysconf("SC_CLK_TCK")
    assert value(found, "hostdiag_agent_cpu_seconds_total", mode="user") == pytest.approx(150 / hz)
    assert value(found, "hostdiag_agent_overruns_total") == 2
    assert value(found, "hostdiag_agent_missed_ticks_total") == 3
    assert value(found, "hostdiag_agent_sample_seconds", stat="max") == 0.5
    assert value(found, "hostdiag_agent_spool_degraded") == 0
    assert value(found, "hostdiag_metrics_rejected_total", reason="timeout") == 5
    assert value(found, "hostdiag_metrics_scrapes_total", format="text") == 4


def test_probe_results_and_slo_figures(sample):
    """The snapshot's probes and slo (a summary of real counters) as series, read back by both parsers."""
    from hostdiag.derive.slo import SloCounters, summarize

    counters = SloCounters()
    for k in range(400):
        counters.record(29_000_000, good=k % 100 != 0)         # 4 bad of 400
    slo = summarize("web", counters, 99.0, 250.0)
    probes = [{"name": "web", "kind": "http", "target": "http://127.0.0.1/", "ok": False, "latency_ms": 12.5,
               "error": "status", "detail": "HTTP 503, expected 200", "at_ns": 1_700_000_000 * 10**9},
              {"name": 'odd "name"', "kind": "tcp", "target": "127.0.0.1:1", "ok": True, "latency_ms": None,
               "error": None, "detail": None, "at_ns": 1_700_000_001 * 10**9}]
    snapshot = dict(sample[0], probes=probes, slo=[slo])
    text = encode_metrics(snapshot)
    found = samples_of(text)
    assert value(found, "hostdiag_probe_success", probe="web", kind="http") == 0
    assert value(found, "hostdiag_probe_success", probe='odd "name"', kind="tcp") == 1
    assert value(found, "hostdiag_probe_latency_seconds", probe="web") == 0.0125
    assert ("hostdiag_probe_latency_seconds", (("probe", 'odd "name"'),)) not in found   # none: no series
    assert value(found, "hostdiag_probe_timestamp_seconds", probe="web") == 1_700_000_000
    assert value(found, "hostdiag_slo_target_ratio", probe="web") == 0.99
    assert value(found, "hostdiag_slo_availability_ratio", probe="web", window="30d") == 0.99
    assert value(found, "hostdiag_slo_results", probe="web", window="1h") == 400
    assert value(found, "hostdiag_slo_good_results", probe="web", window="1d") == 396
    assert value(found, "hostdiag_slo_error_budget_remaining_ratio", probe="web") == 0.0
    assert value(found, "hostdiag_slo_burn_rate", probe="web", window="5m") == 1.0
    assert value(found, "hostdiag_slo_alert", probe="web", rule="page:1h/5m") == 0
    ours = {key: v for key, v in found.items() if key[0].startswith(("hostdiag_probe_", "hostdiag_slo_"))}
    # success, latency, timestamp; target, 3 families x 3 windows, budget, 5 burn rates, 3 rules
    assert len(ours) == 2 + 1 + 2 + 1 + 3 * 3 + 1 + 5 + 3
    om = samples_of(encode_metrics(snapshot, openmetrics=True), parse_openmetrics)
    assert {key: v for key, v in om.items() if key[0].startswith(("hostdiag_probe_", "hostdiag_slo_"))} == ours
    if shutil.which("promtool"):
        code, said = promtool(text)
        assert not [line for line in said.splitlines() if "probe" in line or "slo" in line], said
