"""Findings rules that name one process (or one user) as the cause.

Each rule has the signature and yields the findings of
:mod:`hostdiag.findings.rules`, except :func:`rule_process_rss_leak`, which
reads a window of history (``(snapshot, history)``, see
:func:`hostdiag.findings.rules.evaluate`).

* ``process_cpu``: a process that uses half a CPU or more while the CPUs
  are saturated (all busy, one busy, PSI cpu or load over their limits); the
  CPU symptoms go under it (:mod:`hostdiag.findings.ranking`).
* ``process_rss_growing``: resident memory growing fast within the interval.
* ``process_rss_leak``: resident memory growing steadily over the history
  window: the least-squares slope of RSS against time, with a good fit (r²)
  and growth in most intervals, so that one jump is not a leak, over a
  window long enough (``rss_leak_window_s``) that a compiler's fast growth
  of a few seconds is not one either.
* ``process_fd_limit``: open descriptors against the process's own soft
  RLIMIT_NOFILE; ``user_nproc_limit``: a user's tasks against its soft
  RLIMIT_NPROC. Both read the processes section's ``limits``
  (:mod:`hostdiag.sources.proc_pid_limits`), which holds the limits of the
  processes that matter only.
"""

from hostdiag.derive.process_rates import process_key
from hostdiag.findings.culprits import (
    CULPRITS,
    keyed_records,
    process_culprit,
    process_records,
    records_by_key,
    shared_measure,
    top_culprits,
)
from hostdiag.findings.finding import CRIT, WARN, finding
from hostdiag.findings.thresholds import THRESHOLDS, at_least, limit_text, over
from hostdiag.findings.values import get, num, show

_MIB = 1024.0 * 1024.0


def _cpu_saturated(snapshot, rates):
    """The host-wide CPU measures over their limits: {measure: value}."""
    cpu = getattr(snapshot, "cpu", None)
    hot = {}
    busy = num(get(rates, "cpu", "total", "busy_pct"))
    if over(busy, "cpu_busy_pct"):
        hot["busy_pct"] = busy
    per_cpu = [num(get(state, "busy_pct")) for state in (get(rates, "cpu", "cpus") or {}).values()]
    one = max((v for v in per_cpu if v is not None), default=None)
    if over(one, "one_cpu_busy_pct"):
        hot["one_cpu_busy_pct"] = one
    psi = num(get(getattr(snapshot, "pressure", None), "cpu", "some", "avg10"))
    if over(psi, "psi_cpu_some_avg10"):
        hot["psi_cpu_some_avg10"] = psi
    ncpu = len(get(cpu, "cpus") or ())
    load1 = num(get(cpu, "loadavg", "load1"))
    if ncpu and load1 is not None and over(load1 / ncpu, "load1_per_cpu"):
        hot["load1_per_cpu"] = load1 / ncpu
    return hot


def rule_process_cpu(snapshot, rates, previous=None):
    hot = _cpu_saturated(snapshot, rates)
    if not hot:
        return
    hogs = [c for c in top_culprits(snapshot, rates, "cpu_pct") if at_least(c["cpu_pct"], "process_cpu_pct")]
    if not hogs:
        return
    yield finding(
        "process_cpu", WARN, "CPUs saturated by %d process(es)" % len(hogs),
        dict(hot, cpu_pct=hogs[0]["cpu_pct"], processes=len(hogs)),
        "%s while CPUs are saturated" % limit_text("one process's CPU", "process_cpu_pct", op=">=",
                                                    unit=" % of a CPU"),
        culprits=hogs)


def _same_boot(snapshot, other):
    return other is not None and get(other, "meta", "boot_id") == get(snapshot, "meta", "boot_id")


def _interval_s(snapshot, previous):
    now, before = num(get(snapshot, "meta", "mono_ns")), num(get(previous, "meta", "mono_ns"))
    return None if now is None or before is None or now <= before else (now - before) / 1e9


def rule_process_rss_growing(snapshot, rates, previous=None):
    if not _same_boot(snapshot, previous):
        return
    interval = _interval_s(snapshot, previous)
    if interval is None:
        return
    before = records_by_key(previous)
    # A record that is the previous one itself has not grown: skipped, unless
    # the limit were below zero.
    skip_same = not over(0.0, "process_rss_growth_bytes_per_s")
    growing = []
    for key, record in keyed_records(snapshot):
        old = before.get(key)
        if old is record and skip_same:
            continue
        then, now = None if old is None else num(old.get("rss_bytes")), num(record.get("rss_bytes"))
        if then is None or now is None:
            continue
        rate = (now - then) / interval
        if over(rate, "process_rss_growth_bytes_per_s"):
            growing.append((rate, -record["pid"], record))
    if not growing:
        return
    growing.sort(key=lambda item: item[:2], reverse=True)
    top_rate, _, top = growing[0]
    yield finding(
        "process_rss_growing", WARN, "%d process(es) growing fast in memory" % len(growing),
        {"rss_growth_bytes_per_s": top_rate, "rss_bytes": top.get("rss_bytes"), "interval_s": interval,
         "processes": len(growing)},
        limit_text("resident memory growth", "process_rss_growth_bytes_per_s", unit=" bytes/s"),
        culprits=[process_culprit(r, rss_growth_bytes_per_s=rate, rss_bytes=r.get("rss_bytes"))
                  for rate, _, r in growing[:CULPRITS]])


def _fit(points):
    """(slope, r²) of the least-squares line through ``points`` [(x, y)];
    None when x does not vary. r² is 1 for a perfect line and for constant y."""
    n = float(len(points))
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    syy = sum((y - mean_y) ** 2 for _, y in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    if sxx <= 0:
        return None
    slope = sxy / sxx
    return slope, (1.0 if syy <= 0 else sxy * sxy / (sxx * syy))


def rss_series(snapshot, history):
    """{"pid:start_time": [(seconds, rss bytes)]} for the processes of
    ``snapshot`` over ``history`` (older snapshots, typed or plain dicts, of
    any boot: only those of the snapshot's boot count) and the snapshot."""
    boot = get(snapshot, "meta", "boot_id")
    wanted = {process_key(r) for r in process_records(snapshot)} - {None}
    series = {}
    for moment in list(history) + [snapshot]:
        mono = num(get(moment, "meta", "mono_ns"))
        if mono is None or get(moment, "meta", "boot_id") != boot:
            continue
        records = get(moment, "processes", "processes")
        for record in records if isinstance(records, list) else ():
            key = process_key(record)
            rss = num(record.get("rss_bytes")) if key in wanted else None
            if rss is not None:
                series.setdefault(key, {})[mono] = rss
    return {key: sorted((mono / 1e9, rss) for mono, rss in points.items()) for key, points in series.items()}


def rule_process_rss_leak(snapshot, history):
    """Processes whose resident memory grew steadily over the window of
    ``history`` and ``snapshot`` (at least ``rss_leak_samples`` samples)."""
    by_key = records_by_key(snapshot)
    leaking = []
    for key, points in rss_series(snapshot, history).items():
        if not at_least(len(points), "rss_leak_samples") or \
                not at_least(points[-1][0] - points[0][0], "rss_leak_window_s"):
            continue
        fitted = _fit(points)
        if fitted is None:
            continue
        slope, r2 = fitted
        grew = sum(1 for (_, a), (_, b) in zip(points, points[1:]) if b > a)
        steady = 100.0 * grew / (len(points) - 1)
        if over(slope, "rss_leak_bytes_per_s") and at_least(r2, "rss_leak_fit_r2") \
                and at_least(steady, "rss_leak_growing_pct"):
            leaking.append((slope, r2, points, by_key[key]))
    if not leaking:
        return
    leaking.sort(key=lambda item: (item[0], -item[3]["pid"]), reverse=True)
    slope, r2, points, top = leaking[0]
    window = points[-1][0] - points[0][0]
    yield finding(
        "process_rss_leak", WARN, "%d process(es) leaking memory over the last %s s" % (len(leaking), show(round(window))),
        {"rss_leak_bytes_per_s": slope, "fit_r2": r2, "window_s": window, "samples": len(points),
         "rss_bytes": top.get("rss_bytes"), "grown_bytes": points[-1][1] - points[0][1],
         "processes": len(leaking)},
        "%s, fit r² >= %s, growing in >= %s %% of >= %s samples over >= %s s" % (
            limit_text("resident memory slope", "rss_leak_bytes_per_s", unit=" bytes/s"),
            show(THRESHOLDS["rss_leak_fit_r2"]), show(THRESHOLDS["rss_leak_growing_pct"]),
            show(THRESHOLDS["rss_leak_samples"]), show(THRESHOLDS["rss_leak_window_s"])),
        culprits=[process_culprit(r, rss_leak_bytes_per_s=s, fit_r2=fit, rss_bytes=r.get("rss_bytes"))
                  for s, fit, _, r in leaking[:CULPRITS]])


def process_limits(snapshot):
    """{pid: limits} of the processes section's ``limits`` map whose start
    time matches the process record (a reused pid has none)."""
    section = getattr(snapshot, "processes", None)
    limits = section.get("limits") if isinstance(section, dict) else None
    if not isinstance(limits, dict):
        return {}
    return shared_measure("limits", (section.get("processes"), limits), lambda: _limits_by_pid(snapshot, limits))


def _limits_by_pid(snapshot, limits):
    found = {}
    for record in process_records(snapshot):
        entry = limits.get(str(record["pid"]))
        if isinstance(entry, dict) and entry.get("start_time") == record.get("start_time"):
            found[record["pid"]] = entry
    return found


def _soft(entry, name):
    """The soft limit ``name`` of a limits entry; None for unlimited or unknown."""
    pair = entry.get(name)
    return num(pair[0]) if isinstance(pair, (list, tuple)) and pair else None


def _severity(pct, warn, crit):
    if at_least(pct, crit):
        return CRIT, crit
    if over(pct, warn):
        return WARN, warn
    return None, None


def rule_process_fd_limit(snapshot, rates, previous=None):
    limits = process_limits(snapshot)
    near = []
    for record in process_records(snapshot):
        entry = limits.get(record["pid"])
        if not entry:  # only the processes that matter have their limits read
            continue
        fds = num(record.get("fd_count"))
        soft = _soft(entry, "nofile")
        if fds is None or not soft:
            continue
        pct = 100.0 * fds / soft
        severity, _ = _severity(pct, "fd_limit_warn_pct", "fd_limit_crit_pct")
        if severity:
            near.append((pct, -record["pid"], record, soft))
    if not near:
        return
    near.sort(key=lambda item: item[:2], reverse=True)
    pct, _, top, soft = near[0]
    severity, name = _severity(pct, "fd_limit_warn_pct", "fd_limit_crit_pct")
    yield finding(
        "process_fd_limit", severity, "%d process(es) at or near their open file limit" % len(near),
        {"fd_count": top.get("fd_count"), "fd_limit": soft, "used_pct": pct, "processes": len(near)},
        limit_text("descriptors", name, op=">=" if severity == CRIT else ">", unit=" % of RLIMIT_NOFILE (soft)"),
        culprits=[process_culprit(r, fd_count=r.get("fd_count"), fd_limit=limit)
                  for _, _, r, limit in near[:CULPRITS]])


def rule_user_nproc_limit(snapshot, rates, previous=None):
    """Users (not root, whom the kernel does not hold to RLIMIT_NPROC) whose
    tasks (threads, as the kernel counts them) near the lowest soft
    RLIMIT_NPROC read among their processes."""
    records = process_records(snapshot)
    tasks, names, lowest = {}, {}, {}
    for record in records:
        uid = num(record.get("uid"))
        if uid is None or uid == 0:
            continue
        tasks[uid] = tasks.get(uid, 0) + (num(record.get("num_threads")) or 1)
        names.setdefault(uid, record.get("user"))
    for pid, entry in process_limits(snapshot).items():
        record = next((r for r in records if r["pid"] == pid), None)
        soft = _soft(entry, "nproc")
        uid = num(record.get("uid")) if record else None
        if soft and uid in tasks:
            lowest[uid] = min(soft, lowest.get(uid, soft))
    near = []
    for uid, soft in lowest.items():
        pct = 100.0 * tasks[uid] / soft
        if _severity(pct, "nproc_limit_warn_pct", "nproc_limit_crit_pct")[0]:
            near.append((pct, uid, soft))
    if not near:
        return
    near.sort(reverse=True)
    pct, uid, soft = near[0]
    severity, name = _severity(pct, "nproc_limit_warn_pct", "nproc_limit_crit_pct")
    busiest = sorted((r for r in records if r.get("uid") == uid),
                     key=lambda r: (-(num(r.get("num_threads")) or 1), r["pid"]))
    culprits = [{"kind": "user", "uid": u, "user": names.get(u), "tasks": tasks[u], "nproc_limit": s}
                for _, u, s in near[:CULPRITS]]
    culprits.extend(process_culprit(r, threads=r.get("num_threads")) for r in busiest[:CULPRITS])
    yield finding(
        "user_nproc_limit", severity, "%d user(s) at or near their process limit" % len(near),
        {"uid": uid, "tasks": tasks[uid], "nproc_limit": soft, "used_pct": pct, "users": len(near)},
        limit_text("tasks of a user", name, op=">=" if severity == CRIT else ">", unit=" % of RLIMIT_NPROC (soft)"),
        subject=names.get(uid) or str(uid), culprits=culprits)
