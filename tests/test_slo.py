"""The SLO arithmetic of derive/slo.py with exact numbers, and the state file
of store/slo_state.py (written atomically, a damaged file refused with one line)."""

import os
import zlib

import msgpack
import pytest

from hostdiag.derive import slo as S
from hostdiag.derive.slo import SloCounters, alerts, availability, budget_left, burn_rate, is_good, summarize
from hostdiag.store.slo_state import MAGIC, StateError, load_state, save_state

T0 = 29_000_000   # a minute number (in 2025)


def test_availability_budget_and_burn_rate_exact():
    assert availability(997, 1000) == 0.997
    assert availability(0, 0) is None
    # 3 bad of 1000 at 99.9 %: three times the allowed rate, the 30-day budget overspent twice.
    assert burn_rate(997, 1000, 99.9) == 3.0
    assert budget_left(997, 1000, 99.9) == -2.0
    assert burn_rate(999, 1000, 99.9) == 1.0 and budget_left(999, 1000, 99.9) == 0.0
    assert burn_rate(1000, 1000, 99.9) == 0.0 and budget_left(1000, 1000, 99.9) == 1.0
    # 1 bad of 400 at 99 %: a quarter of the budget spent.
    assert burn_rate(399, 400, 99.0) == 0.25 and budget_left(399, 400, 99.0) == 0.75
    assert burn_rate(0, 0, 99.9) is None and budget_left(0, 0, 99.9) is None


def test_good_means_ok_and_within_the_latency_threshold():
    assert is_good(True, 12.0, None) and is_good(True, None, None)
    assert is_good(True, 250.0, 250.0) and not is_good(True, 250.5, 250.0)
    assert not is_good(True, None, 250.0)          # a success without a latency cannot show it was fast
    assert not is_good(False, 1.0, None)


def test_alert_rules_need_both_windows_above_the_factor():
    assert alerts({"1h": 14.5, "5m": 14.5}) == ["page:1h/5m"]
    assert alerts({"1h": 14.5, "5m": 14.4}) == []            # above, not at
    assert alerts({"1h": 14.5, "5m": None}) == []
    assert alerts({"6h": 6.5, "30m": 7, "3d": 0.5}) == ["page:6h/30m"]     # no ticket: 3 days burn below 1
    assert alerts({"3d": 1.01, "6h": 6.5, "30m": 7}) == ["page:6h/30m", "ticket:3d/6h"]


def test_windows_count_the_newest_minutes_and_forget_older_ones():
    c = SloCounters()
    # Minute T0: 10 results, 2 bad; T0+3: 5 results, all good; T0+70: 4 results, 4 bad.
    for i in range(10):
        c.record(T0, good=i >= 2)
    for _ in range(5):
        c.record(T0 + 3, good=True)
    assert c.window("5m") == (13, 15) and c.window("30d") == (13, 15)
    c.advance(T0 + 5)          # T0 leaves the 5-minute window (T0+1 .. T0+5)
    assert c.window("5m") == (5, 5) and c.window("1h") == (13, 15)
    for _ in range(4):
        c.record(T0 + 70, good=False)
    assert c.window("5m") == (0, 4) and c.window("1h") == (0, 4)      # T0+11 .. T0+70
    assert c.window("6h") == (13, 19) and c.window("30d") == (13, 19)
    c.record(T0 + 69, good=True)           # the wall clock stepped back: counted in the newest minute
    assert c.window("5m") == (1, 5)
    c.advance(T0 + S.RING_MINUTES - 1)      # T0 is the oldest minute of 30 days
    assert c.window("30d") == (14, 20)
    c.advance(T0 + S.RING_MINUTES)          # T0 is gone
    assert c.window("30d") == (6, 10) and c.window("3d") == (0, 0)
    c.advance(T0 + 3 * S.RING_MINUTES)      # everything is gone
    assert all(c.window(w) == (0, 0) for w in S.WINDOWS)


def test_running_sums_equal_a_recount():
    """Many advances and records against a plain recount of the ring."""
    c = SloCounters()
    kept = {}
    minute = T0
    for step in range(3000):
        minute += (step * 7919) % 11                  # 0 to 10 minutes on, deterministic
        good = (step * 31) % 5 != 0
        c.record(minute, good)
        g, t = kept.get(minute, (0, 0))
        kept[minute] = (g + good, t + 1)
    for name, width in S.WINDOWS.items():
        inside = [v for m, v in kept.items() if minute - width < m <= minute]
        assert c.window(name) == (sum(v[0] for v in inside), sum(v[1] for v in inside)), name


def test_summary_of_a_known_hour():
    c = SloCounters()
    # 60 minutes of 6 results each; minutes 0-49 all good, minutes 50-59 one bad each.
    for m in range(60):
        for k in range(6):
            c.record(T0 + m, good=not (m >= 50 and k == 0))
    s = summarize("web", c, 99.0, 250.0)
    assert (s["good_1h"], s["total_1h"]) == (350, 360)
    assert s["availability_1h"] == 350 / 360
    # 5 m: 5 bad of 30 -> (1/6) / 0.01 = 16.666…; 1 h: (10/360) / 0.01 = 2.777…
    assert s["burn_5m"] == pytest.approx(100 / 6, rel=1e-15) and s["burn_1h"] == pytest.approx(1000 / 360, rel=1e-15)
    assert s["budget_left"] == 1 - 1000 / 360
    assert s["alerts"] == ["ticket:3d/6h"] and s["alert"] == "ticket" and s["alerting"] is True
    assert s["target_percent"] == 99.0 and s["latency_threshold_ms"] == 250.0


def test_a_page_when_the_last_minutes_burn_fast():
    c = SloCounters()
    for m in range(60):
        for k in range(10):
            c.record(T0 + m, good=m < 55 or k >= 5)     # the last 5 minutes lose half their results
    s = summarize("web", c, 99.9, None)
    # 1 h: 25 bad of 600 -> 41.67x; 5 m: 25 of 50 -> 500x: both above 14.4.
    assert s["burn_1h"] == pytest.approx(25 / 600 / 0.001, rel=1e-12) and s["burn_5m"] == 500.0
    assert s["alerts"] == ["page:1h/5m", "page:6h/30m", "ticket:3d/6h"] and s["alert"] == "page"


def test_state_round_trips_and_keeps_the_windows(tmp_path):
    c = SloCounters()
    for m in range(0, 500, 7):
        c.record(T0 + m, good=m % 3 != 0)
    path = str(tmp_path / "slo.state")
    save_state(path, {"web": c.to_state()})
    assert oct(os.stat(path).st_mode & 0o777) == "0o640"
    back = load_state(path)["web"]
    assert back.newest == c.newest
    for w in S.WINDOWS:
        assert back.window(w) == c.window(w), w
    assert os.listdir(tmp_path) == ["slo.state"]       # no temporary file left


@pytest.mark.parametrize("damage, reason", [
    (lambda raw: b"not ours" + raw, "not an SLO state file"),
    (lambda raw: raw[:len(raw) // 2], "damaged"),
    (lambda raw: MAGIC + zlib.compress(msgpack.packb({"version": 2})), "unknown version"),
    (lambda raw: raw[:-3] + bytes([raw[-3] ^ 0xFF]) + raw[-2:], "damaged"),
])
def test_a_damaged_state_file_is_refused_with_one_line(tmp_path, damage, reason):
    c = SloCounters()
    c.record(T0, True)
    path = str(tmp_path / "slo.state")
    save_state(path, {"web": c.to_state()})
    with open(path, "rb") as f:
        raw = f.read()
    with open(path, "wb") as f:
        f.write(damage(raw))
    with pytest.raises(StateError, match=reason) as caught:
        load_state(path)
    assert "\n" not in str(caught.value)
    assert load_state(str(tmp_path / "missing")) == {}


def test_the_text_of_diag_slo_fits_80_columns_and_says_when_there_are_no_probes():
    from hostdiag.views.slo import render_slo

    record = {"seq": 7, "wall_ns": 1_700_000_000 * 10**9}
    empty = render_slo("agent unix:/run/hostdiag/agent.sock", record, None, None)
    assert "no probes in this sample" in empty
    c = SloCounters()
    for k in range(1200):
        c.record(T0, good=k >= 5)
    slo = summarize("a-rather-long-probe-name", c, 99.9, None)
    result = {"name": slo["name"], "kind": "http", "target": "http://127.0.0.1:8080/" + "x" * 80, "ok": False,
              "latency_ms": 1.25, "error": "status", "detail": "HTTP 503, expected 200",
              "at_ns": record["wall_ns"] - 3 * 10**9}
    text = render_slo("agent unix:/run/hostdiag/agent.sock", record, [result], [slo])
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    row = next(line for line in lines if line.startswith("a-rather-long…"))
    # 5 bad of 1200 at 99.9 %: 99.583 % available, burn 4.2, budget -316.7 %
    assert row.split()[1:6] == ["99.9%", "99.583%", "99.583%", "99.583%", "-316.7%"]
    assert row.split()[6:] == ["4.2", "4.2", "ticket"]       # above 1 over 3 days and 6 hours, not 14.4 or 6
    assert "  burn-rate alert: ticket:3d/6h" in lines
    detail = lines[lines.index(row) + 1]
    assert detail.startswith("  30d 5 of 1200 bad · last status 1.2 ms, 3.0s before (HTTP 503, expected 200)")
    assert detail.endswith("…") and len(detail) == 80
