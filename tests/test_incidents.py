"""Incidents (docs/incidents.md): the tracker, the bundles, the report, the
protocol requests and the collector's copy.

The tracker and the store are tested alone; the report from real samples
recorded through the agent's own recorder (with the probe results and SLO
section the probes' contract gives a sample); and the whole flow on a real
agent process with a real fault: a 1 MiB tmpfs filled up (a crit finding),
then emptied, while the agent probes a real HTTP service on loopback that
answers 503 while that filesystem has no room.
"""

import http.server
import json
import math
import os
import subprocess
import threading
import time
import zlib
from xml.etree import ElementTree

import pytest

from hostdiag.apps.config import load_config
from hostdiag.apps.incident_recorder import END_RESTARTED, IncidentRecorder
from hostdiag.apps.incidents import main_incident, main_incidents
from hostdiag.encode.wire import encode_msgpack
from hostdiag.findings.incidents import IncidentTracker, incident_signals
from hostdiag.sampler import Sampler
from hostdiag.sources.hostroot import HostRoot
from hostdiag.store import History, Record
from hostdiag.store.sqlite import StoreError
from hostdiag.store.incidents import BundleError, IncidentStore, decode_bundle, encode_bundle
from hostdiag.transport.protocol import Error, ProtocolError
from hostdiag.views.incident import incident_document, render_markdown, what_section

from agentproc import INTERVAL, AgentProcess, CollectorProcess, wait_for
from spoolhelpers import mount_tmpfs

NS = 1_000_000_000
CRIT_FS = {"id": "fs_space", "severity": "crit", "title": "/srv 100 % of space used", "subject": "/srv",
           "evidence": {"used_pct": 100.0}, "threshold": "space used >= 95 %", "culprits": []}
WARN_LOAD = {"id": "load_high", "severity": "warn", "title": "load 9", "subject": None, "evidence": {},
             "threshold": "", "culprits": []}


def run(capsys, main, argv):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


# -- the tracker (pure) --------------------------------------------------------

def _feed(tracker, pattern, start_seq=1):
    """Feed one sample per character (C: a crit finding, S: an SLO burn alert,
    W: a warning only, .: nothing); the events with the seq they came at."""
    events = []
    for offset, mark in enumerate(pattern):
        seq = start_seq + offset
        findings = {"C": [WARN_LOAD, CRIT_FS], "W": [WARN_LOAD]}.get(mark, [])
        slo = {"web": {"alerting": mark == "S", "burn_1h": 20.0, "target": 99.9}}
        event = tracker.observe(seq, seq * NS, incident_signals(findings, slo))
        if event is not None:
            events.append((seq, event))
    return events


def test_tracker_opens_after_n_and_closes_after_m_samples():
    tracker = IncidentTracker(open_after=3, close_after=2)
    events = _feed(tracker, "..CC.CCC.C..W.")
    # "CC." is a run of 2 < 3: nothing. "CCC" from seq 6 opens at seq 8; the
    # C at seq 10 resets the clearing; seqs 11, 12 close it with the end at 11.
    assert [(seq, e["event"]) for seq, e in events] == [(8, "open"), (12, "close")]
    opened, closed = events[0][1], events[1][1]
    assert (opened["start_seq"], opened["detected_seq"], opened["start_ns"]) == (6, 8, 6 * NS)
    assert opened["severity"] == "crit" and opened["title"] == CRIT_FS["title"]
    assert (closed["end_seq"], closed["resolved_seq"], closed["end_ns"]) == (11, 12, 11 * NS)
    assert [s["key"] for s in closed["signals"]] == ["fs_space:/srv"]
    assert tracker.open is None


def test_tracker_slo_burn_opens_and_a_crit_finding_outranks_it():
    tracker = IncidentTracker(open_after=2, close_after=1)
    events = _feed(tracker, "SSCC.")
    opened, closed = events[0][1], events[1][1]
    assert opened["severity"] == "burn" and "probe web" in opened["title"] and "20.0x" in opened["title"]
    assert [s["key"] for s in closed["signals"]] == ["slo:web", "fs_space:/srv"]
    with pytest.raises(ValueError):
        IncidentTracker(0, 1)


def test_signals_page_on_fast_burns_only_and_ignore_a_malformed_slo_section():
    assert incident_signals([WARN_LOAD], None) == []
    assert incident_signals([], {"web": "not a map", "db": {"alerting": "yes"}}) == []
    assert incident_signals([], ["not", "a", "map"]) == []
    # The agent's shape: an array of summaries with their names; a ticket (slow burn) opens nothing.
    summaries = [{"name": "db", "alerting": True, "alert": "ticket"}, {"name": "web", "alerting": True,
                                                                      "alert": "page", "burn_1h": 15.0}]
    assert [s["key"] for s in incident_signals([CRIT_FS], summaries)] == ["fs_space:/srv", "slo:web"]


# -- the bundles ------------------------------------------------------------------

def _summary(incident_id, start_ns, **more):
    return dict({"id": incident_id, "start_ns": start_ns, "state": "closed", "title": "t"}, **more)


def test_store_is_bounded_by_count_and_bytes_and_survives_a_restart(tmp_path):
    store = IncidentStore(tmp_path, max_count=3, max_bytes=1 << 20)
    for i in range(5):
        store.save(_summary("i%d" % i, i), {"records": [], "findings": [{"seq": i}]})
    assert [s["id"] for s in store.list()] == ["i4", "i3", "i2"] and store.evicted == 2
    assert sorted(os.listdir(tmp_path)) == ["i2.incident", "i3.incident", "i4.incident"]
    # Bytes: two bundles of 40 KiB do not fit in 64 KiB: the oldest go first,
    # the small ones, then the first big one; never the one just saved.
    big = {"records": [], "blob": os.urandom(40 * 1024)}
    store = IncidentStore(tmp_path, max_count=10, max_bytes=64 * 1024)
    store.save(_summary("big1", 10), big)
    assert [s["id"] for s in store.list()] == ["big1", "i4", "i3", "i2"]
    store.save(_summary("big2", 11), big)
    assert [s["id"] for s in store.list()] == ["big2"] and store.evicted == 4
    store = IncidentStore(tmp_path, max_count=10, max_bytes=16 * 1024)
    store.save(_summary("big3", 12), big)  # alone over the bound: kept, the rest goes
    # What a restart finds: the same bundles, whole.
    again = IncidentStore(tmp_path, max_count=10, max_bytes=64 * 1024)
    assert [s["id"] for s in again.list()] == ["big3"]
    assert decode_bundle(again.read("big3"))[1]["blob"] == big["blob"]
    assert again.read("nope") is None and again.problems == []


def test_a_damaged_bundle_is_skipped_with_one_line(tmp_path):
    store = IncidentStore(tmp_path, max_count=10, max_bytes=1 << 20)
    store.save(_summary("good", 1), {"records": []})
    store.save(_summary("bad", 2), {"records": [], "pad": "x" * 100})
    path = tmp_path / "bad.incident"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    (tmp_path / "junk.incident").write_bytes(b"not a bundle")
    (tmp_path / "half.incident.tmp").write_bytes(b"an interrupted write")
    again = IncidentStore(tmp_path, max_count=10, max_bytes=1 << 20)
    assert [s["id"] for s in again.list()] == ["good"]
    assert len(again.problems) == 2 and all("\n" not in p for p in again.problems)
    assert any("bad.incident" in p and "CRC" in p for p in again.problems)
    assert any("junk.incident" in p and "magic" in p for p in again.problems)
    assert not (tmp_path / "half.incident.tmp").exists()
    with pytest.raises(BundleError, match="truncated"):
        decode_bundle(encode_bundle({"id": "x"}, {})[:-3])


# -- the report from recorded samples with probe results -----------------------------

@pytest.fixture(scope="module")
def recorded_sample():
    """One real sample of this host, as plain data: the recorded tests shift its times."""
    with Sampler(HostRoot(), tables=False) as sampler:
        return sampler.sample().to_dict()


def _record(base, settings, count, failing, shape="array"):
    """A recorder (memory history and store) fed ``count`` copies of
    ``base`` one second apart, with a probe "web" failing (and its SLO
    paging) in the samples of ``failing``. ``shape``: the SLO section as the
    agent writes it ("array": summaries with their names and the results
    counted over 30 days), or as a map by probe name without counts ("map")."""
    config = load_config(None, {}, dict({"spool.enabled": False}, **settings))
    history = History(None)
    recorder = IncidentRecorder(config, history, lambda: {"hostname": "recorded"})
    first_ns, first_mono = base["meta"]["wall_ns"], base["meta"]["mono_ns"]
    for i in range(count):
        snapshot = dict(base, meta=dict(base["meta"], wall_ns=first_ns + i * NS, mono_ns=first_mono + i * NS))
        down = i in failing
        snapshot["probes"] = [{"name": "web", "kind": "tcp", "target": "127.0.0.1:8080", "ok": not down,
                               "latency_ms": None if down else 2.0 + i / 10, "error": "refused" if down else None,
                               "at_ns": first_ns + i * NS}]
        if shape == "array":
            snapshot["slo"] = [{"name": "web", "target_percent": 99.9, "alerting": down,
                                "alert": "page" if down else None, "burn_1h": 50.0 if down else 0.0,
                                "total_30d": 20000 + i, "budget_left": 0.9}]
        else:
            snapshot["slo"] = {"web": {"target": 0.999, "alerting": down, "burn_1h": 50.0 if down else 0.0}}
        payload = encode_msgpack(snapshot)
        seq = history.append(first_ns + i * NS, payload, snapshot)
        recorder.observe(Record(history.boot_id, seq, first_ns + i * NS, payload), snapshot, [])
    return recorder


@pytest.mark.parametrize("shape, window_results", [
    ("array", 20011),            # counted by the agent, as of the newest summary (sample 11)
    ("map", 30 * 86400 / 1.0),   # not counted: the 30-day window at one check a second
])
def test_report_from_recorded_samples_gives_the_probes_availability_and_budget(recorded_sample, shape,
                                                                               window_results):
    """An SLO burn alert opens the incident; the probe failed in 5 of the 6
    checks from start to end, target 99.9 %: 5 of 0.001 x the window's
    results allowed failures."""
    recorder = _record(recorded_sample, {"incidents.open_after": 2, "incidents.close_after": 2,
                                         "incidents.before": 3}, 14, range(5, 10), shape)
    assert recorder.failures == 0
    (summary,) = recorder.store.list()
    assert summary["severity"] == "burn" and summary["state"] == "closed"
    assert (summary["start_seq"], summary["detected_seq"], summary["end_seq"]) == (6, 7, 11)
    document = incident_document(*decode_bundle(recorder.store.read(summary["id"])))
    (probe,) = document["users"]
    assert (probe["checks"], probe["failures"]) == (6, 5)
    assert probe["availability_pct"] == pytest.approx(100 / 6)
    assert probe["availability_before_pct"] == 100.0
    assert probe["errors"] == {"refused": 5}
    budget = probe["budget"]
    assert budget["allowed_failures"] == pytest.approx(0.001 * window_results)
    assert budget["consumed_pct"] == pytest.approx(100 * 5 / (0.001 * window_results))
    assert document["bundle"]["records"] == 10 and document["when"]["duration_s"] == pytest.approx(5.0)
    markdown = render_markdown(document)
    assert "| web (tcp 127.0.0.1:8080) | 6 | 5 | 16.67 % | 100.00 % |" in markdown
    assert "**%.2f %% of the error budget** consumed" % (100 * 5 / (0.001 * window_results)) in markdown
    assert "probe web failed" in markdown and "## Postmortem" in markdown
    # A record damaged inside a bundle is left out and counted; the report stands.
    summary, body = decode_bundle(recorder.store.read(summary["id"]))
    body["records"][4][3] = b"not zlib"
    body["records"][5][3] = zlib.compress(encode_msgpack({"meta": {"no": "fields"}}))
    markdown = render_markdown(incident_document(summary, body))
    assert "Bundle: 8 records, 2 damaged and skipped." in markdown


def test_a_long_incident_stops_growing_at_its_bound_and_says_so(recorded_sample):
    recorder = _record(recorded_sample, {"incidents.open_after": 1, "incidents.close_after": 1,
                                         "incidents.before": 0, "incidents.bundle_max_bytes": "64KiB",
                                         "incidents.write_every": 0.1}, 120, range(0, 119))
    (summary,) = recorder.store.list()
    assert summary["truncated"] is True and summary["state"] == "closed" and summary["end_seq"] == 120
    data = recorder.store.read(summary["id"])
    assert len(data) <= 64 * 1024
    _, body = decode_bundle(data)
    assert 0 < len(body["records"]) == summary["records"] < 119
    assert [r[1] for r in body["records"]] == list(range(1, len(body["records"]) + 1))  # the beginning is kept
    assert "stopped growing" in render_markdown(incident_document(summary, body))


def test_what_ranks_causes_by_their_crit_findings_not_by_a_lasting_warning():
    """A crit finding of one cause for 7 samples outranks a cause with a
    1-sample crit finding and a warning all along (seen on this shared
    machine: an OOM kill of another test during the full-disk incident)."""
    timeline = []
    for i in range(10):
        found = [dict(WARN_LOAD, id="pressure_cpu")]
        if 2 <= i <= 8:
            found.append(CRIT_FS)
        if i == 5:
            found.append(dict(CRIT_FS, id="oom_kill", subject=None, title="1 OOM kill(s)"))
        timeline.append({"wall_ns": i * NS, "findings": found})
    what, samples = what_section(timeline, 0, 10 * NS)
    assert samples == 10 and [g["cause"] for g in what] == ["/srv", "host"]


# -- the whole flow on a real agent --------------------------------------------------

@pytest.fixture
def processes():
    started = []
    yield started
    for proc in reversed(started):
        proc.kill()


# The service's rule: it answers 503 while its filesystem has less room than
# this; the ballast the test frees gives it room while the filesystem stays
# over the crit threshold (1 MiB - 32 KiB is 96.9 % used, at or above 95 %).
SERVICE_MIN_FREE = 16 * 1024
BALLAST_BYTES = 32 * 1024


class _Storing(http.server.BaseHTTPRequestHandler):
    """A service that stores into ``server.data_dir``: 503 while it is full."""

    def do_GET(self):
        stat = os.statvfs(self.server.data_dir)
        room = stat.f_bavail * stat.f_frsize >= SERVICE_MIN_FREE
        body = b"ok" if room else b"no room to store"
        self.send_response(200 if room else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def storing_service():
    """The service on loopback; the test sets its ``data_dir``."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Storing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _nearest_rank(values, pct):
    ordered = sorted(values)
    return ordered[math.ceil(pct * len(ordered) / 100) - 1] if ordered else None


def _counted_row(name, kind, target, results, start_ns, end_ns):
    """The report's row for probe ``name`` as counted here from the probe
    results of the agent's records (each result once, however many samples
    carry it): checks and failures from start to end, availability during
    and before, latency p50 / p95 / max (nearest rank) of the good checks,
    the error classes; and (checks, failures)."""
    unique = {r["at_ns"]: r for r in results if r["name"] == name}
    during = [r for at, r in unique.items() if start_ns <= at <= end_ns]
    before = [r for at, r in unique.items() if at < start_ns]
    failed = [r for r in during if not r["ok"]]
    good_ms = [r["latency_ms"] for r in during if r["ok"]]
    errors = {}
    for r in failed:
        errors[r["error"]] = errors.get(r["error"], 0) + 1

    def pct(part, whole):
        return "%.2f %%" % (100.0 * part / whole) if whole else "-"

    def ms(value):
        return "-" if value is None else "%.1f ms" % value

    row = "| %s (%s %s) | %d | %d | %s | %s | %s / %s / %s | %s |" % (
        name, kind, target, len(during), len(failed), pct(len(during) - len(failed), len(during)),
        pct(sum(1 for r in before if r["ok"]), len(before)), ms(_nearest_rank(good_ms, 50)),
        ms(_nearest_rank(good_ms, 95)), ms(max(good_ms) if good_ms else None),
        ", ".join("%s x%d" % item for item in sorted(errors.items())) or "-")
    return row, len(during), len(failed)


def _first_seq_from(agent, wall_ns):
    with agent.client() as client:
        page = client.range_page(from_ns=wall_ns, limit=1)
    return page.records[0].seq if page.records else None


def test_an_incident_opens_closes_and_is_reported_from_the_agent_and_the_store(workdir, processes, capsys,
                                                                             storing_service):
    """The fault: the service's filesystem full. The service answers 503
    until the test frees a ballast (the filesystem still over the crit
    threshold, the incident still open), then the filesystem is emptied."""
    mount_point = os.path.join(workdir, "fill")
    os.mkdir(mount_point)
    with mount_tmpfs(mount_point, "1m"):
        storing_service.data_dir = mount_point
        url = "http://127.0.0.1:%d/store" % storing_service.server_address[1]
        # An SLO of 50 % no failure rate can burn at a paging 6x: a burn alert
        # would hold the incident open for its 5-minute window after the fix.
        agent = AgentProcess(workdir, probes=[{"name": "store", "kind": "http", "target": url,
                                               "interval": INTERVAL, "timeout": 5, "slo": 50}],
                             incidents={"open_after": 2, "close_after": 3, "before": 1.0})
        processes.append(agent)
        agent.start().wait_ready().close()
        # A live collector: it fetches the bundles when the records say they changed.
        collector = CollectorProcess(workdir, [("web1", agent.address)])
        processes.append(collector)
        collector.start()
        filler = os.path.join(mount_point, "blob")

        def incidents():
            """This test's incidents: the agent sees every mount of this
            shared machine, and another test's full disk is an incident too."""
            with agent.client() as client:
                return [i for i in client.incidents()["incidents"]
                        if any(s["key"] == "fs_space:" + mount_point for s in i["signals"])]

        # The fault: the filesystem full (dd stops at ENOSPC). The samples
        # taken while dd writes may see it full already, none taken before.
        ballast = os.path.join(mount_point, "ballast")
        before_ns = time.time_ns()
        with open(ballast, "wb") as f:
            f.write(b"\0" * BALLAST_BYTES)
        subprocess.run(["dd", "if=/dev/zero", "of=" + filler, "bs=64k"], capture_output=True, check=False)
        injected_ns = time.time_ns()
        first_possible = wait_for(lambda: _first_seq_from(agent, before_ns), "a sample during the fault")
        injected = wait_for(lambda: _first_seq_from(agent, injected_ns), "a sample after the fault")
        (opened,) = wait_for(incidents, "an incident to open", on_fail=agent.log_tail)
        assert opened["state"] == "open" and opened["severity"] == "crit"
        # Room for the service, the filesystem still 96.9 % used: until a
        # sample carries a good check of the service started after that.
        os.unlink(ballast)
        relief_ns = time.time_ns()

        def served_again():
            with agent.client() as client:
                return any(r["name"] == "store" and r["ok"] and r["at_ns"] > relief_ns
                           for record in client.range(from_ns=relief_ns) for r in record.snapshot["probes"])
        wait_for(served_again, "a good check of the service", on_fail=agent.log_tail)
        assert incidents()[0]["state"] == "open"
        os.unlink(filler)
        removed_ns = time.time_ns()
        removed = wait_for(lambda: _first_seq_from(agent, removed_ns), "a sample after the fix")
        (closed,) = wait_for(lambda: [i for i in incidents() if i["state"] == "closed"] or None,
                             "the incident to close", on_fail=agent.log_tail)
        assert closed["end_reason"] == "cleared"
        # Start and end within two samples of the fault's (the sample in
        # progress at the removal may already see the space free).
        assert first_possible <= closed["start_seq"] <= injected + 2
        assert removed - 1 <= closed["end_seq"] <= removed + 2
        assert closed["detected_seq"] == closed["start_seq"] + 1

        code, out, err = run(capsys, main_incidents, ["--agent", agent.address])
        assert code == 0 and closed["id"] in out and "crit" in out, err
        code, report, err = run(capsys, main_incident, [closed["id"], "--agent", agent.address])
        assert code == 0, err
        # (Not the title: on a shared machine another crit finding, an OOM
        # kill of someone else's test, may come first in the detecting sample.)
        assert report.startswith("# Incident %s: " % closed["id"])
        what = report.split("## What")[1].split("##")[0]
        assert what.strip().startswith("- **%s** (CRIT)" % mount_point)  # the cause first
        assert "Top culprit: **%s**, behind `fs_space`" % mount_point in report
        assert "`gauge.filesystems.%s.used_pct` | 0.0%% | 100.0%% |" % mount_point in report
        users = report.split("## How users were affected")[1].split("##")[0]
        svg = os.path.join(workdir, "incident.svg")
        code, out, err = run(capsys, main_incident, [closed["id"], "--format", "json", "--svg", svg,
                                                     "--agent", agent.address])
        document = json.loads(out)
        chart = ElementTree.parse(svg).getroot()
        legend = [t.text for t in chart.iter("{http://www.w3.org/2000/svg}text")]
        assert any(t.startswith("gauge.filesystems.%s.used_pct  0 .. 100" % mount_point) for t in legend), legend
        assert all("points" not in plot for plot in document["plots"])
        assert document["why"]["culprit"]["finding"] == "fs_space" and document["when"]["end_ns"] == closed["end_ns"]
        # How users were affected, counted here from the probe results of the
        # agent's own records over the bundle's span: the checks of the
        # service from start to end, failed while it had no room.
        bundle = document["bundle"]
        with agent.client() as client:
            carried = [r for record in client.range(from_seq=1) if bundle["first_ns"] <= record.wall_ns
                       <= bundle["last_ns"] for r in record.snapshot["probes"]]
        row, checks, failures = _counted_row("store", "http", url, carried, closed["start_ns"], closed["end_ns"])
        assert 0 < failures < checks, row
        assert row in users, (row, users)
        assert "- store: %d failed checks of " % failures in users

        # The protocol's refusals, one line each, the session going on.
        with agent.client() as client:
            assert client.incident("20000101-000000-0000") is None
            client.send({"type": "incident"})
            with pytest.raises(ProtocolError) as refused:
                client._reply(("incident",))
            assert refused.value.code == Error.BAD_REQUEST
            listed = client.incidents(limit=1)
            assert len(listed["incidents"]) == 1 and listed["more"] == (listed["total"] > 1)

        # The collector pulled the closed bundle: the report outlives the agent.
        def stored():
            try:
                with collector.store() as store:
                    return [i for i in store.incidents() if i["id"] == closed["id"] and i["state"] == "closed"] or None
            except StoreError:  # not created yet
                return None
        wait_for(stored, "the collector to store the closed incident", deadline_s=60, on_fail=collector.log_tail)
        collector.stop()
        agent.stop()
        code, from_store, err = run(capsys, main_incident, [closed["id"], "--store", collector.store_dir])
        assert code == 0, err
        assert from_store.split("## What")[1] == report.split("## What")[1]
        code, out, err = run(capsys, main_incidents, ["--store", collector.store_dir, "--format", "json"])
        assert (closed["id"], "web1") in [(i["id"], i["host"]) for i in json.loads(out)["incidents"]]

        # An incident open when the agent stops is closed as "agent restarted" at its next start.
        agent.start().wait_ready().close()
        subprocess.run(["dd", "if=/dev/zero", "of=" + filler, "bs=64k"], capture_output=True, check=False)
        wait_for(lambda: [i for i in incidents() if i["state"] == "open"] or None, "a second incident",
                 on_fail=agent.log_tail)
        agent.stop()
        os.unlink(filler)
        agent.start().wait_ready().close()
        second = [i for i in incidents() if i["id"] != closed["id"]]
        assert [(i["state"], i["end_reason"]) for i in second] == [("closed", END_RESTARTED)]
        assert "closed as 'agent restarted'" in agent.read_log()
        agent.stop()

    code, out, err = run(capsys, main_incident, ["nope", "--store", collector.store_dir])
    assert code == 1 and out == "" and err.count("\n") == 1 and "keeps no incident nope" in err

