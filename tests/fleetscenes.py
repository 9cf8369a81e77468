"""Simulated hosts for the fleet tests: a few seconds of snapshots per host,
hand-built so that each host's findings and top processes are known exactly.

Every host samples once a second for :data:`SAMPLES` seconds from
:data:`START_NS`, with the process and socket tables on every second sample
(as an agent with ``table_every = 2``). The snapshots are the plain documents
an agent serves (msgpack-able dicts of every section the rules read); the
tests store them through the collector's writer and read them back through
``diag fleet``.

The hosts (see :data:`HOSTS`):

``web1``  TCP retransmits from seq 3 on: 10 % of the segments sent, the
          connection to 10.0.0.9:5432 held by ``pgbouncer`` retransmitting
          50 segments/s;
``web2``  CPUs 95 % busy from seq 3 on, ``burner`` (pid 300) the busiest;
``db1``   memory low (4 % available: crit) from seq 1 on, ``postgres`` the largest;
``web3``  calm: no finding.

Processes: per host, pids 100, 200, 300 with CPU per second of 10 %, 20 %
and, on web2, 90 % (else 30 %); resident sizes 100, 200, 300 MiB (db1: 300
MiB, 1 GiB, 2 GiB); reads of 1, 2, 3 MB/s; each in the systemd unit named
after it (``pgbouncer.service``).
"""

from hostdiag.encode.wire import encode_msgpack

START_NS = 1_795_000_000 * 10**9  # 2026-11-18 (a fixed day: the tests do not depend on today)
SAMPLES = 8
TABLE_EVERY = 2
HZ = 100
MIB = 1 << 20
GIB = 1 << 30
CPUS = 4

HOSTS = ("web1", "web2", "db1", "web3")


def agent_id(host):
    return "agent-" + host


def boot_id(host):
    return "boot-" + host


def _cpu_share(host, pid):
    """CPU of one process, percent of one CPU."""
    return {100: 10, 200: 20, 300: 90 if host == "web2" else 30}[pid]


def _rss(host, pid):
    sizes = {100: 300 * MIB, 200: GIB, 300: 2 * GIB} if host == "db1" else {100: 100 * MIB, 200: 200 * MIB,
                                                                            300: 300 * MIB}
    return sizes[pid]


_COMM = {100: "nginx", 200: "pgbouncer", 300: "burner"}
_DB_COMM = {100: "sshd", 200: "pgbouncer", 300: "postgres"}


def process_record(host, pid, second):
    """A process at ``second`` seconds after START_NS."""
    comm = (_DB_COMM if host == "db1" else _COMM)[pid]
    ticks = _cpu_share(host, pid) * HZ // 100 * second
    return {"pid": pid, "ppid": 1, "comm": comm, "cmdline": ["/usr/bin/" + comm], "state": "S", "uid": 0,
            "user": "root", "start_time": 1000 + pid, "kernel_thread": False, "utime": ticks, "stime": 0,
            "minflt": 0, "majflt": 0, "num_threads": 1, "nice": 0, "priority": 20, "rss_bytes": _rss(host, pid),
            "vsize_bytes": 4 * _rss(host, pid), "delayacct_blkio_ticks": 0, "voluntary_ctxt_switches": 0,
            "nonvoluntary_ctxt_switches": 0, "read_bytes": pid // 100 * 10**6 * second, "write_bytes": 0,
            "fd_count": 10, "cgroup": "/system.slice/%s.service" % comm, "oom_score_adj": 0}


_SOCKET_FIELDS = ("family", "state", "local", "local_port", "remote", "remote_port", "rqueue", "wqueue", "uid",
                  "inode", "rtt", "total_retrans", "bytes_acked", "drops")


def _socket_rows(host, second):
    """Two connections; on web1 after the first second, the one to :5432 retransmits 50 segments/s."""
    bad = 50 * max(0, second - 1) if host == "web1" else 0
    return [["inet", "ESTABLISHED", "10.0.0.1", 40000, "10.0.0.9", 5432, 0, 0, 0, 5001, 2000, bad, 10**6, 0],
            ["inet", "ESTABLISHED", "10.0.0.1", 443, "10.0.0.7", 51000, 0, 0, 0, 5002, 1000, 1, 10**6, 0]]


def snapshot(host, seq):
    """The snapshot of ``host`` with sequence number ``seq`` (1-based, one a second)."""
    second = seq - 1
    wall_ns = START_NS + second * 10**9
    # Ticks over CPUS CPUs: 95 % busy on web2 in every second after the
    # first (so from seq 3 on), else 5 %.
    calm, hot = (min(second, 1), max(0, second - 1)) if host == "web2" else (second, 0)
    user = 5 * CPUS * calm + 95 * CPUS * hot
    idle = 95 * CPUS * calm + 5 * CPUS * hot
    total = {"user": user, "nice": 0, "system": 0, "idle": idle, "iowait": 0, "irq": 0, "softirq": 0,
             "steal": 0, "guest": 0, "guest_nice": 0}
    cpus = {"cpu%d" % i: {k: v // CPUS for k, v in total.items()} for i in range(CPUS)}
    out_segs = 10000 * second
    retrans = 1000 * max(0, second - 1) if host == "web1" and seq >= 3 else 0
    snap = {
        "meta": {"hostname": host + ".example", "boot_id": boot_id(host), "kernel": "6.1.0", "wall_ns": wall_ns,
                 "mono_ns": 10**12 + second * 10**9, "duration_ns": 10**6, "parser_impl": "pure",
                 "clock_ticks": HZ, "proc_root": "/proc", "sys_root": "/sys", "live": True, "schema_version": 1,
                 "errors": []},
        "cpu": {"total": total, "cpus": cpus, "ctxt": 1000 * second, "intr": 0, "softirq": 0,
                "processes": 500, "procs_running": 1, "procs_blocked": 0, "btime": 1_794_000_000,
                "loadavg": {"load1": 0.5, "load5": 0.5, "load15": 0.5, "runnable": 1, "threads": 50,
                            "last_pid": 400},
                "uptime": {"uptime_s": 1000.0 + second, "idle_s": 3000.0}},
        "memory": {"meminfo": {"MemTotal": 16 * GIB, "MemFree": GIB,
                               "MemAvailable": (16 * GIB * 4 // 100) if host == "db1" else 8 * GIB,
                               "SwapTotal": 0, "SwapFree": 0},
                   "vmstat": {"pswpin": 0, "pswpout": 0, "pgfault": 1000, "pgmajfault": 0, "oom_kill": 0},
                   "swaps": []},
        "network": {"links": [{"name": "eth0", "index": 2, "kind": None, "operstate": "up", "mtu": 1500,
                               "address": None, "carrier_changes": 0,
                               "stats": {"rx_bytes": 10**6 * second, "tx_bytes": 10**6 * second,
                                         "rx_packets": 0, "tx_packets": 0, "rx_errors": 0, "tx_errors": 0,
                                         "rx_dropped": 0, "tx_dropped": 0}}],
                    "snmp": {"Tcp": {"ActiveOpens": 0, "PassiveOpens": 0, "AttemptFails": 0, "EstabResets": 0,
                                     "OutRsts": 0, "InErrs": 0, "InSegs": out_segs, "OutSegs": out_segs,
                                     "RetransSegs": retrans, "CurrEstab": 2}}},
    }
    if seq % TABLE_EVERY == 0:
        snap["processes"] = {"processes": [process_record(host, pid, second) for pid in (100, 200, 300)]}
        snap["sockets"] = {"tcp_total": 2, "tcp_table": {"fields": list(_SOCKET_FIELDS),
                                                         "rows": _socket_rows(host, second)},
                           "owners": {"5001": [{"pid": 200, "comm": "pgbouncer"}],
                                      "5002": [{"pid": 100, "comm": "nginx"}]}}
        comms = _DB_COMM if host == "db1" else _COMM
        snap["cgroups"] = {"cgroups": [], "workloads": {
            "/system.slice/%s.service" % comm: {"kind": "unit", "name": "%s.service" % comm, "unit": comm + ".service"}
            for comm in comms.values()}}
    return snap


def record_items(hosts=HOSTS, samples=SAMPLES):
    """The collector writer's work items for every host's samples, in the
    order pullers would queue them (hosts interleaved)."""
    items = [("host", host, "tcp:%s:7781" % host, host + ".example") for host in hosts]
    for seq in range(1, samples + 1):
        for host in hosts:
            snap = snapshot(host, seq)
            items.append(("record", host, agent_id(host), boot_id(host), seq, snap["meta"]["wall_ns"],
                          encode_msgpack(snap), snap, None))
    return items
