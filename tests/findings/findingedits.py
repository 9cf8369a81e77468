"""Snapshots edited past (or just under) each rule's threshold, and hand-built
process and socket tables, for the findings tests.

The base is a real snapshot of this host with the inputs of every rule set to
calm values (the host running the tests may itself be loaded); ``cur`` is a
copy one second later, edited per case. Each edit takes (prev, cur) and
changes cur (or both).
"""

import copy

from hostdiag.sources.netns import COUNTERS as NETNS_COUNTERS
from hostdiag.model.records import PROCESS, TCP_SOCKET_ROW

RECORD_KEYS = PROCESS.names
ROW_FIELDS = TCP_SOCKET_ROW.names

GIB = 1 << 30


def calm(snapshot):
    """A copy of ``snapshot`` in which every rule's input is known and calm."""
    s = copy.deepcopy(snapshot)
    n = len(s.cpu.cpus)
    s.cpu.loadavg = {"load1": 0.1, "load5": 0.1, "load15": 0.1, "runnable": 1, "threads": 50, "last_pid": 1}
    s.cpu.procs_running, s.cpu.procs_blocked = 1, 0
    s.memory.meminfo = dict(s.memory.meminfo or {}, MemTotal=8 * GIB, MemAvailable=4 * GIB)
    s.memory.vmstat = dict(s.memory.vmstat or {}, pswpin=1000, pswpout=1000, pgfault=10**6,
                           pgmajfault=1000, oom_kill=0)
    line = {"avg10": 0.0, "avg60": 0.0, "avg300": 0.0, "total_us": 1000}
    s.pressure = {r: {"some": dict(line), "full": dict(line)} for r in ("cpu", "memory", "io")}
    s.pressure["irq"] = None
    disk = dict.fromkeys(("reads_completed", "reads_merged", "sectors_read", "read_time_ms",
                          "writes_completed", "writes_merged", "sectors_written", "write_time_ms",
                          "io_time_ms", "weighted_io_time_ms"), 1000)
    s.disks = [dict(disk, major=254, minor=0, name="vdz", ios_in_progress=0, is_partition=False, parent=None),
               dict(disk, major=254, minor=1, name="vdz1", ios_in_progress=0, is_partition=True, parent="vdz")]
    s.filesystems = [{"mountpoint": "/data", "device": "/dev/vdz1", "fstype": "ext4", "major": 254,
                      "minor": 1, "options": "rw,relatime", "size_bytes": 1000, "free_bytes": 500,
                      "avail_bytes": 450, "files": 1000, "files_free": 900, "readonly": False}]
    stats = dict.fromkeys(("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "rx_errors",
                           "tx_errors", "rx_dropped", "tx_dropped"), 1000)
    s.network = dict(s.network or {})
    s.network.update(
        links=[{"name": "eth9", "index": 9, "kind": None, "operstate": "up", "mtu": 1500,
                "address": None, "carrier_changes": 0, "stats": stats}],
        snmp={"Tcp": dict.fromkeys(("ActiveOpens", "PassiveOpens", "AttemptFails", "EstabResets",
                                    "OutRsts", "InErrs", "InSegs", "OutSegs", "RetransSegs"), 1000)
              | {"CurrEstab": 5},
              "Udp": dict.fromkeys(("InDatagrams", "OutDatagrams", "InErrors", "RcvbufErrors",
                                    "SndbufErrors", "NoPorts"), 1000)},
        netstat={"TcpExt": {"ListenOverflows": 10, "ListenDrops": 10}},
        softnet=[{"cpu": i, "processed": 1000, "dropped": 5, "time_squeeze": 5} for i in range(n)],
        conntrack={"count": 10, "max": 1000},
    )
    s.kernel = dict(s.kernel or {}, tainted=0, taint_flags="", kmsg=None,
                    file_nr={"allocated": 1000, "unused": 0, "max": 100000})
    return s


def _add_ticks(times, **ticks):
    for state, value in ticks.items():
        times[state] += value


def load(factor):
    def edit(prev, cur):
        cur.cpu.loadavg["load1"] = factor * len(cur.cpu.cpus)
    return edit


def total_ticks(**ticks):
    def edit(prev, cur):
        _add_ticks(cur.cpu.total, **ticks)
    return edit


def one_cpu_ticks(busy):
    def edit(prev, cur):
        for i, name in enumerate(sorted(cur.cpu.cpus)):
            _add_ticks(cur.cpu.cpus[name], **({"user": busy, "idle": 100 - busy} if i == 0 else {"idle": 100}))
    return edit


def available(fraction):
    def edit(prev, cur):
        cur.memory.meminfo["MemAvailable"] = int(fraction * cur.memory.meminfo["MemTotal"])
    return edit


def vmstat(**inc):
    def edit(prev, cur):
        for key, value in inc.items():
            cur.memory.vmstat[key] += value
    return edit


def oom_since_boot(prev, cur):
    prev.memory.vmstat["oom_kill"] = cur.memory.vmstat["oom_kill"] = 3


def psi(resource, kind, avg10):
    def edit(prev, cur):
        cur.pressure[resource][kind]["avg10"] = avg10
    return edit


def disk(**inc):
    def edit(prev, cur):
        for key, value in inc.items():
            cur.disks[0][key] += value
    return edit


def fs(**fields):
    def edit(prev, cur):
        cur.filesystems[0].update(fields)
    return edit


def link(**inc):
    def edit(prev, cur):
        for key, value in inc.items():
            cur.network["links"][0]["stats"][key] += value
    return edit


def proto(section, group, **inc):
    def edit(prev, cur):
        for key, value in inc.items():
            cur.network[section][group][key] += value
    return edit


def softnet(**inc):
    def edit(prev, cur):
        for key, value in inc.items():
            cur.network["softnet"][0][key] += value
    return edit


def kernel(**fields):
    def edit(prev, cur):
        cur.kernel.update(fields)
    return edit


def conntrack(count):
    def edit(prev, cur):
        cur.network["conntrack"] = {"count": count, "max": 100}
    return edit


def kmsg(severity, message="EXT4-fs error (device vdz1)", ago_s=0.5):
    """Edit: one kernel log line in cur, logged ``ago_s`` before it (the pair
    is one second apart: under 1 is in the interval)."""
    return kmsg_lines((severity, message, ago_s))


def kmsg_lines(*lines):
    """Edit: kernel log lines ``(severity, message, seconds before cur)`` in cur."""
    def edit(prev, cur):
        now_us = cur.meta.mono_ns // 1000
        cur.kernel["kmsg"] = [{"severity": severity, "level": "x", "facility": 0, "seq": i,
                               "ts_us": now_us - int(ago_s * 1e6), "message": message}
                              for i, (severity, message, ago_s) in enumerate(lines)]
    return edit


# --- process and socket tables, built by hand --------------------------------

def proc(pid, state="S", ppid=1, comm=None, start_time=None, **fields):
    """A process record with every key of the table; counters at calm values."""
    record = dict.fromkeys(RECORD_KEYS)
    record.update(pid=pid, ppid=ppid, comm=comm or "p%d" % pid, cmdline=["/usr/bin/p%d" % pid, "-x"],
                  state=state, uid=0, user="root", start_time=start_time or 1000 + pid,
                  kernel_thread=False, utime=100, stime=100, minflt=1000, majflt=10,
                  num_threads=1, nice=0, priority=20, rss_bytes=pid * 4096, vsize_bytes=pid * 8192,
                  delayacct_blkio_ticks=0, voluntary_ctxt_switches=10,
                  nonvoluntary_ctxt_switches=10, read_bytes=0, write_bytes=0, fd_count=5,
                  cgroup="/", oom_score_adj=0, denied=[])
    record.update(fields)
    return record


def processes_section(records, limits=None):
    by_state = {}
    for r in records:
        by_state[r["state"]] = by_state.get(r["state"], 0) + 1
    section = {"processes": records, "counts": {"total": len(records), "threads": len(records),
                                                "by_state": by_state}, "vanished": 0, "denied": 0}
    if limits is not None:
        section["limits"] = limits
    return section


def table(records_prev, records_cur, limits=None):
    """Edit: give both snapshots a process table; ``limits`` ({pid: {"nofile":
    [soft, hard], "nproc": [soft, hard]}}) in cur's, for those processes."""
    def edit(prev, cur):
        prev.processes = processes_section(records_prev)
        by_pid = {r["pid"]: r for r in records_cur}
        cur.processes = processes_section(records_cur, None if limits is None else {
            str(pid): dict(entry, start_time=by_pid[pid]["start_time"]) for pid, entry in limits.items()})
    return edit


def cpu_hog(cpu_share, busy=95):
    """Edit: all CPUs ``busy`` % busy, one process using ``cpu_share`` of a CPU."""
    def edit(prev, cur):
        total_ticks(user=busy, idle=100 - busy)(prev, cur)
        ticks = cur.meta.clock_ticks
        table([proc(300), proc(301)], [proc(300, utime=100 + int(ticks * cpu_share)), proc(301)])(prev, cur)
    return edit


def rss_growth(grown_bytes):
    """Edit: process 310 grows by ``grown_bytes`` between the two snapshots."""
    return table([proc(310, rss_bytes=100 << 20)], [proc(310, rss_bytes=(100 << 20) + grown_bytes)])


def fd_use(fds, soft=100):
    return table([], [proc(320, fd_count=fds), proc(321, fd_count=fds)],
                 limits={320: {"nofile": [soft, 4096], "nproc": [None, None]}})


def user_tasks(threads, soft=20):
    """Edit: uid 1000 runs processes with ``threads`` tasks in all, under a
    soft RLIMIT_NPROC of ``soft`` (read from one of them)."""
    records = [proc(330, uid=1000, user="app", num_threads=threads - 1), proc(331, uid=1000, user="app"),
               proc(332, num_threads=500)]
    return table([], records, limits={330: {"nofile": [1024, 4096], "nproc": [soft, soft]}})


def d_state(count, before=True, reused=False):
    """Edit: ``count`` processes in D state in cur; in prev too when ``before``,
    with another start time (a reused pid: another process) when ``reused``."""
    def edit(prev, cur):
        stuck = [proc(100 + i, state="D") for i in range(count)]
        earlier = [proc(100 + i, state="D", start_time=50 + i if reused else None)
                   for i in range(count)] if before else []
        table(earlier + [proc(10)], stuck + [proc(10)])(prev, cur)
    return edit


def zombies(count):
    parent = proc(50, comm="spawner")
    return table([], [parent] + [proc(200 + i, state="Z", ppid=50, cmdline=[]) for i in range(count)])


def conn_row(local_port, remote_port, inode, total_retrans, state="ESTABLISHED", rtt=2000,
             rqueue=0, wqueue=0):
    values = {"family": "inet", "state": state, "local": "127.0.0.1", "local_port": local_port,
              "remote": "127.0.0.2", "remote_port": remote_port, "rqueue": rqueue, "wqueue": wqueue,
              "uid": 0, "inode": inode, "rtt": rtt, "total_retrans": total_retrans,
              "bytes_acked": 1000, "drops": 0}
    return [values[name] for name in ROW_FIELDS]


def sockets_section(rows, listeners=(), owners=None):
    return {"source": "netlink", "limits": {"tcp_rows": 100000, "udp": 10000, "detail_per_rank": 20},
            "tcp_total": len(rows) + len(listeners),
            "tcp_states": {"ESTABLISHED": len(rows), "LISTEN": len(listeners)},
            "tcp_table": {"fields": list(ROW_FIELDS), "rows": rows, "dropped": 0},
            "tcp": [], "listeners": list(listeners), "udp": [], "udp_total": 0, "udp_dropped": 0,
            "unix": {"total": 0, "by_state": {}, "by_type": {}}, "owners": owners or {}}


def retrans(per_second, owners=None):
    """Edit: one connection retransmits ``per_second`` segments/s over the 1 s interval."""
    def edit(prev, cur):
        prev.sockets = sockets_section([conn_row(5000, 6000, 77, 10), conn_row(5001, 6001, 78, 3)])
        cur.sockets = sockets_section([conn_row(5000, 6000, 77, 10 + per_second),
                                       conn_row(5001, 6001, 78, 3)], owners=owners)
    return edit


def listener(backlog, backlog_max=128, owners=None):
    def edit(prev, cur):
        full = {"family": "inet", "local": "0.0.0.0", "local_port": 8080, "inode": 99,
                "backlog": backlog, "backlog_max": backlog_max}
        calm = {"family": "inet6", "local": "::", "local_port": 22, "inode": 98, "backlog": 0,
                "backlog_max": 128}
        prev.sockets = sockets_section([], [calm])
        cur.sockets = sockets_section([], [calm, full], owners=owners)
    return edit


WORKLOAD_PATH = "/system.slice/web.service"


def cgroup_row(path=WORKLOAD_PATH, inode=11, usage=0, periods=0, throttled=0, quota=50000, oom_kill=0,
               current=100 << 20, limit=256 << 20, file=0, pids=3, pids_max=100, refused=0, psi=None):
    """A cgroup row as the cgroup table gives it (v2 names)."""
    line = lambda avg10: {"avg10": avg10, "avg60": 0.0, "avg300": 0.0, "total_us": 1000}
    return {"path": path, "inode": inode,
            "cpu": {"usage_usec": usage, "user_usec": usage, "system_usec": 0, "nr_periods": periods,
                    "nr_throttled": throttled, "throttled_usec": throttled * 1000, "quota_usec": quota,
                    "period_usec": 100000},
            "memory": {"current": current, "max": limit, "high": "max", "swap_current": 0, "swap_max": "max",
                       "events": {"oom": oom_kill, "oom_kill": oom_kill, "high": 0, "max": oom_kill},
                       "stat": {"anon": current - file, "file": file, "kernel": 0, "sock": 0, "shmem": 0,
                                "pgmajfault": 0}},
            "io": {}, "pids": {"current": pids, "max": pids_max, "events_max": refused},
            "pressure": {r: {"some": line((psi or {}).get(r, 0.0)), "full": line(0.0)}
                         for r in ("cpu", "memory", "io")}}


def cgroups_section(rows):
    return {"layout": "unified", "hierarchies": [], "cgroups": rows, "vanished": 0, "omitted": 0,
            "max_depth": 5, "max_cgroups": 2000,
            "workloads": {r["path"]: {"kind": "unit", "name": r["path"].rsplit("/", 1)[-1]} for r in rows}}


def cgroup(before=None, after=None):
    """Edit: both snapshots get the root cgroup and the web.service row, with
    the fields ``before`` in prev and ``after`` in cur; a process of the
    service (pid 60) in both process tables."""
    def edit(prev, cur):
        prev.cgroups = cgroups_section([cgroup_row("/"), cgroup_row(**(before or {}))])
        cur.cgroups = cgroups_section([cgroup_row("/"), cgroup_row(**(after or {}))])
        worker = dict(proc(60, comm="web"), cgroup=WORKLOAD_PATH)
        table([worker], [dict(worker, utime=150)])(prev, cur)
    return edit


# --- network namespaces ----------------------------------------------------------

NETNS_INODE = 4026532999
NETNS_NAME = "web-ns"


def netns_record(inode=NETNS_INODE, name=NETNS_NAME, host=False, **inc):
    """A namespace record as the netns table gives it; ``inc`` adds to its
    counters by name (Tcp, Udp and TcpExt names are distinct)."""
    counters = {part: {group: {name_: 1000 + inc.get(name_, 0) for name_ in names}
                       for group, names in groups.items()}
                for part, groups in NETNS_COUNTERS.items()}
    return {"inode": inode, "name": name, "host": host, "processes": 1, "pids": [] if host else [61],
            "cgroup": WORKLOAD_PATH, "snmp": None if host else counters["snmp"],
            "netstat": None if host else counters["netstat"],
            "sockets": None if host else {
                "source": "netlink", "tcp_total": 2, "tcp_states": {"ESTABLISHED": 1, "LISTEN": 1},
                "listeners": [{"family": "inet", "local": "0.0.0.0", "local_port": 8080, "inode": 97,
                               "backlog": 129, "backlog_max": 128}], "listeners_total": 1,
                "retransmitting": [{"state": "ESTABLISHED", "local": "10.0.0.2", "local_port": 8080,
                                    "remote": "10.0.0.9", "remote_port": 5555,
                                    "total_retrans": 40 + inc.get("RetransSegs", 0), "rtt": 9000,
                                    "inode": 96}],
                "udp_total": 1, "udp_drops": inc.get("RcvbufErrors", 0), "unix_total": 0}}


def netns(**inc):
    """Edit: both snapshots list the host's namespace and one other, whose
    counters grow by ``inc`` over the interval, with a process in the
    web.service cgroup (pid 61)."""
    def edit(prev, cur):
        host = netns_record(inode=4026531840, name=None, host=True)
        for snapshot, grown in ((prev, {}), (cur, inc)):
            snapshot.netns = {"limits": {"max_netns": 16}, "total": 1, "visited": 1, "denied": 0,
                              "namespaces": [host, netns_record(**grown)]}
        cgroup()(prev, cur)
        worker = dict(proc(61, comm="api"), cgroup=WORKLOAD_PATH)
        prev.processes["processes"].append(worker)
        cur.processes["processes"].append(worker)
    return edit
