"""The fleet load tool (benchmarks/fleetload.py) keeps working: a tiny run of 5 simulated
agents against a real collector stores every record once and measures a lag.

The recording is taken here with the real sampler (4 samples, the tables on the 2nd and
4th), so that the recorder is exercised too. No timing is asserted: only that the lag and
the CPU figures are computed from the records of the window.
"""

import argparse
import io
import os
import sys

import pytest

from hostdiag.encode.delta import apply
from hostdiag.encode.wire import encode_msgpack

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCHMARKS)
import fleetload  # noqa: E402


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("fleetload") / "recording.bin")
    sizes = fleetload.record_history(path, samples=4, interval_s=0.05, table_every=2)
    assert len(sizes) == 4
    # The table samples carry the process table: much larger than the system ones.
    assert sizes[1] > sizes[0] and sizes[3] > sizes[2]
    return path


def test_recording_replays_with_fresh_identity(recording):
    loaded = fleetload.Recording(recording)
    one = fleetload.ReplayHistory(loaded, "agent-a", "11111111-1111-4111-8111-111111111111")
    two = fleetload.ReplayHistory(loaded, "agent-b", "22222222-2222-4222-8222-222222222222")
    assert any(change is not None for change in loaded.changes)
    for n in range(6):
        record, snapshot, stored = one.append(1000 + n)
        two.append(2000 + n)
        assert record.seq == n + 1 and record.wall_ns == 1000 + n
        assert record.payload == loaded.payloads[n % 4]
        # After the first record, a change offered to subscribers rebuilds this one exactly
        # (one that would not, a key-order difference, is not offered: the server computes it).
        if n == 0 or loaded.changes[n % 4] is None:
            assert stored is None
        else:
            assert stored.base_seq == n and stored.base is loaded.docs[(n - 1) % 4]
            assert encode_msgpack(apply(stored.change, stored.base, stored.prior)) == record.payload
    assert [r.seq for r in one.range(start_seq=3, limit=2)] == [3, 4]
    assert one.info()["newest_seq"] == 6 and one.info()["boot_id"] != two.info()["boot_id"]
    assert two.range(boot_id=one.boot_id) == []


def test_bad_recording_is_one_line(tmp_path):
    path = tmp_path / "junk.bin"
    path.write_bytes(b"not a recording")
    with pytest.raises(SystemExit) as raised:
        fleetload.Recording(str(path))
    assert "cannot read the recording" in str(raised.value) and "\n" not in str(raised.value)


def test_five_agents_nothing_lost(recording, tmp_path):
    args = argparse.Namespace(recording=recording, agents=5, seconds=3.0, interval=0.5, store="sqlite",
                              clickhouse=None, serve_processes=1, poll_interval=1.0, profile=None, collector_nice=0, serve_nice=0,
                              drain_deadline=60.0, warm_deadline=60.0,
                              workdir=str(tmp_path), keep=False)
    result = fleetload.run(args, out=io.StringIO())
    assert result["collector_exit"] == 0
    assert result["warmed_up"] is True and result["drained"] is True
    assert result["lost"] == 0 and result["behind"] == 0 and result["duplicates"] == 0
    assert result["records_stored"] == result["records_produced"]
    # Each agent took at least the window's records at 2 per second.
    assert result["records_produced"] >= 5 * 6
    assert result["records_in_window"] > 0
    lag = result["lag_s"]
    assert lag["p50"] is not None and 0 < lag["p50"] <= lag["p99"] <= lag["max"]
    # CPU per agent-second is the collector's CPU time over agents and the window.
    expected = 1000 * result["collector_cpu_s"] / 5 / result["window_s"]
    assert result["collector_cpu_ms_per_agent_s"] == pytest.approx(expected, rel=0.01, abs=1e-3)
    assert result["sqlite_record_bytes_per_agent_day"] > 0
    assert os.listdir(str(tmp_path)) == []  # the run's directory is removed
