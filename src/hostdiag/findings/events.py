"""Findings from the kernel log: the events its lines name, with how long ago.

Each rule has the signature and yields the findings of
:mod:`hostdiag.findings.rules`. The lines are the snapshot's ``kernel.kmsg``
(the newest warning-or-worse lines and the info lines that name an event);
:mod:`hostdiag.derive.kernel_events` says what a line names. A line's
time is the kernel's (µs since boot, the clock ``meta.mono_ns`` follows), so
``ago_s`` is ``mono_ns`` minus it. An event is ``when`` "now" when it was
logged after the previous snapshot of the pair (in the interval), else
"past": it says how long ago and never ranks above a fault going on now.
"""

from hostdiag.derive.kernel_events import kernel_events, kmsg_lines, names_event
from hostdiag.findings.finding import CRIT, NOW, PAST, WARN, ago_text, finding
from hostdiag.findings.thresholds import THRESHOLDS
from hostdiag.findings.values import get, num

# Events named per finding (the newest first).
NAMED_EVENTS = 3


def _clock(snapshot, previous):
    """(now, start of the interval) in µs since boot; the start is None
    without a previous snapshot of the same boot."""
    now = num(get(snapshot, "meta", "mono_ns"))
    before = num(get(previous, "meta", "mono_ns")) if previous is not None else None
    if before is not None and get(previous, "meta", "boot_id") != get(snapshot, "meta", "boot_id"):
        before = None
    return (None if now is None else now / 1000.0), (None if before is None else before / 1000.0)


class _Timing:
    """When a line was logged, against the snapshot's clock."""

    def __init__(self, snapshot, previous):
        self.now_us, self.since_us = _clock(snapshot, previous)

    def when(self, ts_us):
        return NOW if self.since_us is not None and ts_us > self.since_us else PAST

    def ago_s(self, ts_us):
        return None if self.now_us is None else max(0.0, (self.now_us - ts_us) / 1e6)

    def words(self, ts_us):
        ago = self.ago_s(ts_us)
        return "in the interval" if self.when(ts_us) == NOW else ("?" if ago is None else ago_text(ago))


def _oom_victims(events):
    """{pid: victim} merged from the "Killed process" line and the
    ``oom-kill:`` line (which names the cgroup) of each kill, newest last."""
    victims = {}
    for line, event in events:
        if event["event"] != "oom_kill":
            continue
        victim = victims.pop(event["pid"], {"kind": "victim", "pid": event["pid"], "comm": None, "cgroup": None})
        victim["comm"] = victim["comm"] or event.get("comm")
        victim["cgroup"] = victim["cgroup"] or event.get("cgroup")
        victim["ts_us"] = line["ts_us"]
        victims[event["pid"]] = victim
    return list(victims.values())


def _culprit(victim):
    return {k: v for k, v in victim.items() if k != "ts_us"}


def rule_kernel_events(snapshot, rates, previous=None):
    """OOM victims, hung tasks, I/O errors per device, segfaults and links
    that went down, from the kernel log."""
    events = kernel_events(snapshot)
    if not events:
        return
    timing = _Timing(snapshot, previous)
    yield from _oom(events, timing)
    yield from _hung_tasks(events, timing)
    yield from _io_errors(events, timing)
    yield from _segfaults(events, timing)
    yield from _links(events, timing)


def _oom(events, timing):
    victims = _oom_victims(events)
    if not victims:
        return
    last = victims[-1]
    when = timing.when(last["ts_us"])
    yield finding(
        "kernel_oom_kill", CRIT if when == NOW else WARN,
        "%d OOM kill(s) in the kernel log, the last %s" % (len(victims), timing.words(last["ts_us"])),
        {"oom_kills_logged": len(victims), "last_ago_s": timing.ago_s(last["ts_us"])},
        "an OOM kill line in the kernel log", subject=last.get("cgroup"),
        culprits=[_culprit(v) for v in reversed(victims[-NAMED_EVENTS:])],
        when=when, ago_s=timing.ago_s(last["ts_us"]))


def _hung_tasks(events, timing):
    hung = [(line, event) for line, event in events if event["event"] == "hung_task"]
    if not hung:
        return
    line, event = hung[-1]
    culprits = [{"kind": "process", "pid": e["pid"], "comm": e["comm"], "blocked_s": e["blocked_s"]}
                for _, e in reversed(hung[-NAMED_EVENTS:])]
    yield finding(
        "kernel_hung_task", WARN, "%d hung task report(s), the last %s" % (len(hung), timing.words(line["ts_us"])),
        {"reports": len(hung), "blocked_s": event["blocked_s"], "last_ago_s": timing.ago_s(line["ts_us"])},
        "a hung task line in the kernel log", culprits=culprits,
        when=timing.when(line["ts_us"]), ago_s=timing.ago_s(line["ts_us"]))


def _io_errors(events, timing):
    by_device = {}
    for line, event in events:
        if event["event"] == "io_error":
            by_device.setdefault(event["device"], []).append(line)
    for device, lines in sorted(by_device.items()):
        last = lines[-1]["ts_us"]
        when = timing.when(last)
        yield finding(
            "kernel_io_error", CRIT if when == NOW else WARN,
            "%d I/O error line(s) for %s, the last %s" % (len(lines), device, timing.words(last)),
            {"lines": len(lines), "last_ago_s": timing.ago_s(last)},
            "an I/O error line in the kernel log", subject=device, when=when, ago_s=timing.ago_s(last))


def _segfaults(events, timing):
    faults = [(line, event) for line, event in events if event["event"] == "segfault"]
    if not faults:
        return
    line, _ = faults[-1]
    culprits = [{"kind": "process", "pid": e["pid"], "comm": e["comm"], "fault": e["kind"]}
                for _, e in reversed(faults[-NAMED_EVENTS:])]
    yield finding(
        "kernel_segfault", WARN, "%d process crash(es) in the kernel log, the last %s"
        % (len(faults), timing.words(line["ts_us"])),
        {"crashes": len(faults), "last_ago_s": timing.ago_s(line["ts_us"])},
        "a segfault or trap line in the kernel log", culprits=culprits,
        when=timing.when(line["ts_us"]), ago_s=timing.ago_s(line["ts_us"]))


def _links(events, timing):
    by_device = {}
    for line, event in events:
        if event["event"] == "link":
            by_device.setdefault(event["device"], []).append((line["ts_us"], event["state"]))
    for device, changes in sorted(by_device.items()):
        downs = [ts for ts, state in changes if state == "down"]
        if not downs:
            continue
        last_ts, last_state = changes[-1]
        if last_state == "down":
            title = "%s link went down %s" % (device, timing.words(last_ts))
        else:
            title = "%s link went down %s, up again %s" % (device, timing.words(downs[-1]), timing.words(last_ts))
        yield finding(
            "kernel_link", WARN, title,
            {"downs": len(downs), "down_now": int(last_state == "down"),
             "last_ago_s": timing.ago_s(last_ts)},
            "a link down line in the kernel log", subject=device,
            when=timing.when(last_ts), ago_s=timing.ago_s(last_ts))


def rule_kernel_log(snapshot, rates, previous=None):
    """Kernel log lines at err or worse that no event rule names."""
    limit = THRESHOLDS["kernel_log_severity"]
    lines = [line for line in kmsg_lines(snapshot)
             if num(line.get("severity")) is not None and line["severity"] <= limit
             and not names_event(line)]
    if not lines:
        return
    timing = _Timing(snapshot, previous)
    worst = min(line["severity"] for line in lines)
    last = lines[-1]
    when = timing.when(last["ts_us"])
    yield finding(
        "kernel_log_errors", CRIT if worst < limit and when == NOW else WARN,
        "%d kernel log line(s) at err or worse, the last %s: %s"
        % (len(lines), timing.words(last["ts_us"]), str(last.get("message") or "")[:80]),
        {"lines": len(lines), "worst_severity": worst, "last_ts_us": last.get("ts_us"),
         "last_ago_s": timing.ago_s(last["ts_us"])},
        "kernel log severity <= %d (err); crit below, in the interval" % limit,
        when=when, ago_s=timing.ago_s(last["ts_us"]))
