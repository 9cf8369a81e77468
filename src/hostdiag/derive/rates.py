"""Rates and utilisations from two snapshots of the same boot.

:func:`derive_rates` turns ``(prev, cur)`` into plain data. Every rate comes
from :func:`counter_rate`, which gives ``None`` (never a negative or huge
number) when a counter went backwards (wrap, reset, device re-created), when
either side is ``None`` or not a number, or when the interval is not positive.
Snapshots of different boots (``meta.boot_id`` differs) are not comparable:
the result keeps its shape but every rate in it is ``None``.

The returned dict (``…_per_s`` values are per second; ``…_pct`` values are
percent, 0–100; every leaf may be ``None``)::

    interval_s      seconds between the snapshots (meta.mono_ns difference)
    comparable      True when both snapshots are of the same boot and
                    interval_s > 0; when False every rate below is None
    reason          why the snapshots are not comparable, else None
    cpu             None unless both snapshots have a cpu section, else
      total         {state_pct: percent of the CPU time that elapsed in the
                     interval} for user, nice, system, idle, iowait, irq,
                     softirq, steal, guest, guest_nice (guest time is taken
                     out of user and guest_nice out of nice, as mpstat does,
                     so the states sum to 100), plus busy_pct = 100 - idle -
                     iowait - steal (the CPUs' own work, steal apart as
                     in sar and top)
      cpus          {"cpu0": same keys as total} for CPUs in both snapshots
      ctxt_per_s    context switches per second
      intr_per_s    interrupts per second (all sources)
      softirq_per_s softirqs per second (all kinds)
      forks_per_s   processes and threads created per second
    memory          None unless both snapshots have a memory section, else
      swap_in_pages_per_s, swap_out_pages_per_s
                    pages swapped in / out per second (vmstat pswpin/pswpout)
      page_faults_per_s, major_faults_per_s
                    page faults / major (I/O) page faults per second
      oom_kills     processes killed by the OOM killer in the interval (count)
    disks           None unless both snapshots have disks, else {name: disk}
                    for whole disks; a disk is
      reads_per_s, writes_per_s           completed I/Os per second
      read_bytes_per_s, write_bytes_per_s bytes per second (sectors of 512 B)
      await_ms      mean time per read or write, queue plus service, in
                    milliseconds; None when no I/O completed
      r_await_ms, w_await_ms              the same for reads / writes only
      util_pct      percent of the interval with I/O in flight (capped at 100)
      avg_queue     mean number of I/Os in flight (weighted time / interval)
      in_flight     I/Os in flight at the second snapshot (gauge)
    partitions      as disks, for partitions
    network         None unless both snapshots have a network section, else
      links         {name: link}; a link is
        rx_bits_per_s, tx_bits_per_s, rx_packets_per_s, tx_packets_per_s,
        rx_errors_per_s, tx_errors_per_s, rx_dropped_per_s, tx_dropped_per_s,
        errors_per_s (rx + tx), dropped_per_s (rx + tx)
      tcp           active_opens_per_s, passive_opens_per_s, attempt_fails_per_s,
                    estab_resets_per_s, out_rsts_per_s, in_errs_per_s,
                    in_segs_per_s, out_segs_per_s, retrans_segs_per_s,
                    listen_overflows_per_s, listen_drops_per_s (per second);
                    retransmit_pct (retransmitted segments as percent of
                    all segments sent, OutSegs + RetransSegs); curr_estab (established connections at the
                    second snapshot, gauge)
      udp           in_datagrams_per_s, out_datagrams_per_s, in_errors_per_s,
                    rcvbuf_errors_per_s, sndbuf_errors_per_s, no_ports_per_s
      softnet       cpus: {cpu number: {processed_per_s, dropped_per_s,
                    time_squeeze_per_s}}; total: the same summed over CPUs
                    (None when any CPU's value is None or there are none)
    pressure        None unless both snapshots have PSI, else {resource:
                    {"some_pct", "full_pct"}}: percent of the interval in which
                    some / all non-idle tasks stalled on cpu, memory, io or irq
                    (from total_us, capped at 100)
    processes       None unless both snapshots have a processes section, else
                    {"pid:start_time": process rates} for every process of the
                    second one (:mod:`hostdiag.derive.process_rates`): cpu_pct
                    (percent of one CPU, may exceed 100 for several threads),
                    read_bytes_per_s, write_bytes_per_s, minflt_per_s,
                    majflt_per_s, ctxsw_per_s; all None for a process new in
                    the interval
    sockets         None unless both snapshots have a sockets section, else
                    {connection key: {"retrans_per_s", "bytes_acked_per_s"}}
                    for every TCP row of the second one
                    (:mod:`hostdiag.derive.socket_rates`); None for a
                    connection new in the interval or without tcp_info
    cgroups         None unless both snapshots have a cgroups section, else
                    {cgroup path: cgroup rates} for every cgroup of the second
                    one (:mod:`hostdiag.derive.cgroup_rates`): cpu_pct,
                    throttled_time_pct, throttled_periods_pct, oom_kills,
                    memory_max_events, major_faults_per_s, read_bytes_per_s,
                    write_bytes_per_s, forks_refused, pressure; all None for a
                    cgroup new in the interval (path and inode)
    netns           None unless both snapshots have a netns section, else
                    {namespace inode: rates} for every namespace besides the
                    host's that both visited (:mod:`hostdiag.derive.netns_rates`):
                    retrans_segs_per_s, out_segs_per_s, retransmit_pct,
                    listen_overflows_per_s, listen_drops_per_s,
                    udp_in_errors_per_s, udp_rcvbuf_errors_per_s, ...
"""

from hostdiag.derive.cgroup_rates import cgroup_rates
from hostdiag.derive.counters import get, growth, is_number
from hostdiag.derive.netns_rates import netns_rates
from hostdiag.derive.process_rates import process_rates
from hostdiag.derive.socket_rates import socket_rates

NS_PER_S = 1e9
SECTOR_BYTES = 512

CPU_STATES = (
    "user", "nice", "system", "idle", "iowait",
    "irq", "softirq", "steal", "guest", "guest_nice",
)

# (kernel counter, rate key) of /proc/stat's event counters.
CPU_EVENTS = (
    ("ctxt", "ctxt_per_s"), ("intr", "intr_per_s"),
    ("softirq", "softirq_per_s"), ("processes", "forks_per_s"),
)
# (vmstat counter, rate key)
VMSTAT_RATES = (
    ("pswpin", "swap_in_pages_per_s"), ("pswpout", "swap_out_pages_per_s"),
    ("pgfault", "page_faults_per_s"), ("pgmajfault", "major_faults_per_s"),
)
# (rtnl_link_stats64 counter, rate key, factor)
LINK_RATES = (
    ("rx_bytes", "rx_bits_per_s", 8), ("tx_bytes", "tx_bits_per_s", 8),
    ("rx_packets", "rx_packets_per_s", 1), ("tx_packets", "tx_packets_per_s", 1),
    ("rx_errors", "rx_errors_per_s", 1), ("tx_errors", "tx_errors_per_s", 1),
    ("rx_dropped", "rx_dropped_per_s", 1), ("tx_dropped", "tx_dropped_per_s", 1),
)
# (section of the network snapshot, group, kernel counter, rate key)
TCP_RATES = (
    ("snmp", "Tcp", "ActiveOpens", "active_opens_per_s"),
    ("snmp", "Tcp", "PassiveOpens", "passive_opens_per_s"),
    ("snmp", "Tcp", "AttemptFails", "attempt_fails_per_s"),
    ("snmp", "Tcp", "EstabResets", "estab_resets_per_s"),
    ("snmp", "Tcp", "OutRsts", "out_rsts_per_s"),
    ("snmp", "Tcp", "InErrs", "in_errs_per_s"),
    ("snmp", "Tcp", "InSegs", "in_segs_per_s"),
    ("snmp", "Tcp", "OutSegs", "out_segs_per_s"),
    ("snmp", "Tcp", "RetransSegs", "retrans_segs_per_s"),
    ("netstat", "TcpExt", "ListenOverflows", "listen_overflows_per_s"),
    ("netstat", "TcpExt", "ListenDrops", "listen_drops_per_s"),
)
UDP_RATES = (
    ("snmp", "Udp", "InDatagrams", "in_datagrams_per_s"),
    ("snmp", "Udp", "OutDatagrams", "out_datagrams_per_s"),
    ("snmp", "Udp", "InErrors", "in_errors_per_s"),
    ("snmp", "Udp", "RcvbufErrors", "rcvbuf_errors_per_s"),
    ("snmp", "Udp", "SndbufErrors", "sndbuf_errors_per_s"),
    ("snmp", "Udp", "NoPorts", "no_ports_per_s"),
)
SOFTNET_RATES = (
    ("processed", "processed_per_s"), ("dropped", "dropped_per_s"),
    ("time_squeeze", "time_squeeze_per_s"),
)
PSI_RESOURCES = ("cpu", "memory", "io", "irq")


def _increase(a, b, dt):
    """How much a cumulative counter grew over a valid interval, else None."""
    if not is_number(dt) or dt <= 0:
        return None
    return growth(a, b)


def counter_rate(a, b, dt):
    """Per-second rate of a cumulative counter that read ``a`` and, ``dt``
    seconds later, ``b``. None when either reading is None, when ``dt`` is
    None or not positive, or when the counter went backwards."""
    increase = _increase(a, b, dt)
    return None if increase is None else increase / dt


def _ratio(numerator, denominator, scale=1.0):
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return scale * numerator / denominator


def _scaled(value, factor, cap=None):
    if value is None:
        return None
    value *= factor
    return min(value, cap) if cap is not None else value


def _total(values):
    """The sum, or None when there is nothing to sum or any part is unknown."""
    values = list(values)
    if not values or any(v is None for v in values):
        return None
    return sum(values)


def _rates(a, b, dt, table):
    """{rate key: rate} for a table of (counter, rate key) over two dicts."""
    return {key: counter_rate(get(a, name), get(b, name), dt) for name, key in table}


def derive_rates(prev, cur):
    """Rates from two snapshots, ``prev`` taken before ``cur``. See the module
    docstring for every key and its unit."""
    dt = (cur.meta.mono_ns - prev.meta.mono_ns) / NS_PER_S
    reason = None
    if prev.meta.boot_id != cur.meta.boot_id:
        reason = "different boots"
    elif dt <= 0:
        reason = "interval is not positive"
    rate_dt = dt if reason is None else None
    return {
        "interval_s": dt,
        "comparable": reason is None,
        "reason": reason,
        "cpu": _cpu(prev.cpu, cur.cpu, rate_dt),
        "memory": _memory(prev.memory, cur.memory, rate_dt),
        "disks": _block_devices(prev.disks, cur.disks, rate_dt, partitions=False),
        "partitions": _block_devices(prev.disks, cur.disks, rate_dt, partitions=True),
        "network": _network(prev.network, cur.network, rate_dt),
        "pressure": _pressure(prev.pressure, cur.pressure, rate_dt),
        "processes": _processes(prev, cur, rate_dt),
        "sockets": _sockets(prev.sockets, cur.sockets, rate_dt),
        "cgroups": _cgroups(prev.cgroups, cur.cgroups, rate_dt),
        "netns": _netns(prev.netns, cur.netns, rate_dt),
    }


def cpu_percent(a, b, dt):
    """Per-state percent of the CPU time that elapsed between two
    ``{state: ticks}`` dicts, plus ``busy_pct``; None values where unknown."""
    inc = {state: _increase(get(a, state), get(b, state), dt) for state in CPU_STATES}
    # The kernel counts guest time in user too, and guest_nice in nice.
    for host, guest in (("user", "guest"), ("nice", "guest_nice")):
        if inc[host] is not None and inc[guest] is not None:
            inc[host] = max(inc[host] - inc[guest], 0)
    elapsed = _total(v for v in inc.values() if v is not None)
    result = {state + "_pct": _ratio(inc[state], elapsed, 100.0) for state in CPU_STATES}
    # Busy as sar and top count it: steal is time the CPU ran another guest.
    idle, iowait, steal = result["idle_pct"], result["iowait_pct"], result["steal_pct"]
    result["busy_pct"] = None if idle is None or iowait is None else max(100.0 - idle - iowait - (steal or 0.0), 0.0)
    return result


def _cpu(a, b, dt):
    if a is None or b is None:
        return None
    cpus_a = a.cpus or {}
    result = {
        "total": cpu_percent(a.total, b.total, dt),
        "cpus": {name: cpu_percent(cpus_a.get(name), times, dt)
                 for name, times in (b.cpus or {}).items()},
    }
    for name, key in CPU_EVENTS:
        result[key] = counter_rate(getattr(a, name, None), getattr(b, name, None), dt)
    return result


def _memory(a, b, dt):
    if a is None or b is None:
        return None
    result = _rates(a.vmstat, b.vmstat, dt, VMSTAT_RATES)
    result["oom_kills"] = _increase(get(a.vmstat, "oom_kill"), get(b.vmstat, "oom_kill"), dt)
    return result


def disk_rates(a, b, dt):
    """The rates of one block device between two diskstats rows."""
    def inc(field):
        return _increase(get(a, field), get(b, field), dt)

    def rate(field):
        return counter_rate(get(a, field), get(b, field), dt)

    reads, writes = inc("reads_completed"), inc("writes_completed")
    read_ms, write_ms = inc("read_time_ms"), inc("write_time_ms")
    return {
        "reads_per_s": rate("reads_completed"),
        "writes_per_s": rate("writes_completed"),
        "read_bytes_per_s": _scaled(rate("sectors_read"), SECTOR_BYTES),
        "write_bytes_per_s": _scaled(rate("sectors_written"), SECTOR_BYTES),
        "await_ms": _ratio(_total((read_ms, write_ms)), _total((reads, writes))),
        "r_await_ms": _ratio(read_ms, reads),
        "w_await_ms": _ratio(write_ms, writes),
        # io_time and weighted_io_time are milliseconds: per second of
        # interval, 1000 ms of io_time is 100 % busy.
        "util_pct": _scaled(rate("io_time_ms"), 0.1, cap=100.0),
        "avg_queue": _scaled(rate("weighted_io_time_ms"), 0.001),
        "in_flight": get(b, "ios_in_progress"),
    }


def _block_devices(a, b, dt, partitions):
    if a is None or b is None:
        return None
    before = {d.get("name"): d for d in a if isinstance(d, dict)}
    result = {}
    for device in b:
        if not isinstance(device, dict) or bool(device.get("is_partition")) != partitions:
            continue
        old = before.get(device.get("name"))
        # The same name on another major:minor is another device.
        if old is not None and (old.get("major"), old.get("minor")) != (
                device.get("major"), device.get("minor")):
            old = None
        result[device.get("name")] = disk_rates(old, device, dt)
    return result


def link_rates(a, b, dt):
    """The rates of one network link between two ``stats`` dicts."""
    result = {key: _scaled(counter_rate(get(a, name), get(b, name), dt), factor)
              for name, key, factor in LINK_RATES}
    result["errors_per_s"] = _total((result["rx_errors_per_s"], result["tx_errors_per_s"]))
    result["dropped_per_s"] = _total((result["rx_dropped_per_s"], result["tx_dropped_per_s"]))
    return result


def _links(a, b, dt):
    before = {link.get("name"): link for link in a or () if isinstance(link, dict)}
    result = {}
    for link in b or ():
        if not isinstance(link, dict):
            continue
        old = before.get(link.get("name"))
        # A link re-created under the same name has a new index and new counters.
        if old is not None and old.get("index") != link.get("index"):
            old = None
        result[link.get("name")] = link_rates(get(old, "stats"), link.get("stats"), dt)
    return result


def _protocol(a, b, dt, table):
    return {key: counter_rate(get(a, section, group, name), get(b, section, group, name), dt)
            for section, group, name, key in table}


def _tcp(a, b, dt):
    result = _protocol(a, b, dt, TCP_RATES)
    retrans = _increase(get(a, "snmp", "Tcp", "RetransSegs"), get(b, "snmp", "Tcp", "RetransSegs"), dt)
    out = _increase(get(a, "snmp", "Tcp", "OutSegs"), get(b, "snmp", "Tcp", "OutSegs"), dt)
    # OutSegs counts new segments only (tcp_output.c skips retransmits), so
    # everything sent is OutSegs + RetransSegs.
    result["retransmit_pct"] = _ratio(retrans, _total((out, retrans)), 100.0)
    result["curr_estab"] = get(b, "snmp", "Tcp", "CurrEstab")
    return result


def _softnet(a, b, dt):
    before = {row.get("cpu"): row for row in a or () if isinstance(row, dict)}
    cpus = {row.get("cpu"): _rates(before.get(row.get("cpu")), row, dt, SOFTNET_RATES)
            for row in b or () if isinstance(row, dict)}
    total = {key: _total(row[key] for row in cpus.values()) for _, key in SOFTNET_RATES}
    return {"cpus": cpus, "total": total}


def _network(a, b, dt):
    if a is None or b is None:
        return None
    return {
        "links": _links(a.get("links"), b.get("links"), dt),
        "tcp": _tcp(a, b, dt),
        "udp": _protocol(a, b, dt, UDP_RATES),
        "softnet": _softnet(a.get("softnet"), b.get("softnet"), dt),
    }


def _pressure(a, b, dt):
    if a is None or b is None:
        return None
    result = {}
    for resource in PSI_RESOURCES:
        result[resource] = {
            kind + "_pct": _scaled(counter_rate(get(a, resource, kind, "total_us"),
                                                get(b, resource, kind, "total_us"), dt),
                                   100.0 / 1e6, cap=100.0)
            for kind in ("some", "full")
        }
    return result


def _processes(prev, cur, dt):
    if prev.processes is None or cur.processes is None:
        return None
    return process_rates(prev.processes, cur.processes, dt, cur.meta.clock_ticks)


def _sockets(a, b, dt):
    if a is None or b is None:
        return None
    # socket_rates takes a number: 0 makes every rate None, as for a bad interval.
    return socket_rates(a, b, dt if dt is not None else 0)


def _cgroups(a, b, dt):
    if not isinstance(a, dict) or not isinstance(b, dict):
        return None
    return cgroup_rates(a, b, dt)


def _netns(a, b, dt):
    if not isinstance(a, dict) or not isinstance(b, dict):
        return None
    return netns_rates(a, b, dt)
