"""What to look at next for each rule's finding: one line per rule id, the
"look next" column of docs/findings.md (a test keeps the two equal; the escaped
pipes of the Markdown are plain ``|`` here). Each finding carries its line as ``look_next``."""

LOOK_NEXT = {
    "cgroup_oom_kill": (
        "the workload's limit against its need: `memory.max` / `memory.limit_in_bytes`, `memory.stat` "
        "anon; `dmesg -T | grep -A20 'Memory cgroup out of memory'` for the victim"
    ),
    "cgroup_pids": (
        "a fork loop or a thread leak in the workload (`ps -L --ppid` in it), or a limit too low for it "
        "(`TasksMax=` of the unit, the pod's pid limit)"
    ),
    "cgroup_cpu_throttled": (
        "the quota (`cpu.max`, `cpu.cfs_quota_us`; `CPUQuota=`, the container's CPU limit) against its "
        "CPU use: latency spikes of one period come from here; more threads burn the quota sooner"
    ),
    "cgroup_memory": (
        "which memory: `memory.stat` (anon, shmem, kernel); the top processes by RSS in it; raise the "
        "limit or find the growth before the OOM killer does"
    ),
    "cgroup_pressure": (
        "the workload's own limits (CPU quota, memory.high/max, io.max) or its own contention; the "
        "host-wide rules stay quiet because only this workload suffers"
    ),
    "oom_kill": (
        "`dmesg -T | grep -i -A20 'out of memory'` for the victim and the memory map; the cgroup's "
        "`memory.events` (`oom_kill`) if it was a cgroup limit"
    ),
    "oom_kill_since_boot": (
        "when and what: `journalctl -k | grep -i oom`; whether it repeats"
    ),
    "memory_low": (
        "top RSS processes (`ps aux --sort=-rss | head`), slab (`slabtop -o`), tmpfs and shm usage (`df "
        "-t tmpfs`), hugepages reserved (`HugePages_Total`)"
    ),
    "fs_space": (
        "`du -xh --max-depth=2 MOUNT | sort -h`; deleted-but-open files (`lsof +L1`); the root reserve "
        "(`tune2fs -l`)"
    ),
    "fs_inodes": (
        "directories with many small files: `du --inodes -x MOUNT | sort -n | tail` (mail queues, session "
        "dirs, caches)"
    ),
    "fs_readonly": (
        "`dmesg` for `Remounting filesystem read-only` / I/O errors; the disk's SMART or the hypervisor's "
        "volume state; was it mounted ro on purpose (`findmnt MOUNT`)?"
    ),
    "conntrack_full": (
        "`dmesg` for `nf_conntrack: table full, dropping packet`; `conntrack -S`; which flows (`conntrack "
        "-L | awk '{print $1, $4}' | sort | uniq -c`); timeouts"
    ),
    "kernel_log_errors": (
        "the lines themselves (`dmesg -T --level=emerg,alert,crit,err`): disk, NIC, filesystem and "
        "hung-task messages name their device"
    ),
    "load_high": (
        "load counts runnable and uninterruptible (D) tasks: compare `procs_running` with "
        "`procs_blocked`; `vmstat 1` (r vs b); PSI cpu and io; `ps -eo state,pid,cmd | grep ^D`"
    ),
    "cpu_busy": (
        "who: `pidstat 1`, `top`; user vs system time; `perf top`"
    ),
    "cpu_iowait": (
        "the disks section (await, util); `iostat -xz 1`; `pidstat -d 1` for the process doing I/O"
    ),
    "cpu_steal": (
        "noisy neighbours or CPU credits on the hypervisor side; the instance's CPU limits; not fixable "
        "from inside the guest"
    ),
    "cpu_one_busy": (
        "a single-threaded bottleneck or an interrupt pinned to one CPU: `mpstat -P ALL 1`, "
        "`/proc/interrupts`, `pidstat -t 1`"
    ),
    "psi_cpu_some": (
        "run queue length vs CPUs, CPU quotas (`cpu.max`, `cpu.stat` `nr_throttled`)"
    ),
    "psi_memory_some": (
        "memory available, major faults, swap rates; the cgroup's `memory.pressure`"
    ),
    "psi_io_some": (
        "the disks section (await, util, queue); `iotop`; cgroup `io.pressure`"
    ),
    "psi_memory_full": (
        "the host is thrashing: OOM risk; see `memory_low`, `swapping`, `major_faults`"
    ),
    "swapping": (
        "`vmstat 1` (si/so); which processes have swap (`grep VmSwap /proc/*/status`); memory pressure"
    ),
    "major_faults": (
        "page cache thrashing or swap-in: `pidstat -r 1` (majflt/s), memory available, PSI memory"
    ),
    "disk_util": (
        "on SSDs and arrays 100 % is not saturation: compare avg queue and await; `iostat -xz 1`; "
        "`pidstat -d 1` / `iotop` for who"
    ),
    "disk_await": (
        "r_await vs w_await, the queue; a failing or throttled disk (`dmesg`, the cloud volume's "
        "IOPS/throughput limits)"
    ),
    "procs_d_state": (
        "one sample catches short waits too, so one snapshot never fires it; a process in D for the whole "
        "interval is stuck: `cat /proc/PID/stack` (wchan), the disk or NFS server it waits on, hung-task "
        "messages in `dmesg`"
    ),
    "procs_zombie": (
        "the parent does not `wait()` for its children: a bug in it, or it is stuck (check its state); "
        "zombies hold only a pid, but enough of them exhaust `pid_max`; killing the parent lets init reap "
        "them"
    ),
    "nic_errors": (
        "`ip -s -s link show DEV`; `ethtool -S DEV` (crc, frame, fifo); cable, duplex, driver"
    ),
    "nic_drops": (
        "`ethtool -S DEV` (rx_missed, ring full: `ethtool -g`), softnet drops, qdisc drops (`tc -s "
        "qdisc`)"
    ),
    "tcp_retransmits": (
        "packet loss on the path: NIC drops and errors, `ss -ti` (retrans per socket), `nstat -az | grep "
        "-i retrans`"
    ),
    "tcp_conn_retrans": (
        "loss or a slow peer on that path: `ss -tin dst REMOTE` (rtt, cwnd, lost, retrans), `mtr REMOTE`, "
        "the NIC and softnet drops; the peer's receive window (`rwnd_limited`)"
    ),
    "tcp_listen_overflow": (
        "`ss -ltn` (Recv-Q vs Send-Q = backlog); the application is not accepting fast enough; "
        "`somaxconn` and the listen backlog"
    ),
    "tcp_listener_full": (
        "the process that owns it is not calling `accept()` fast enough (stuck, overloaded, too few "
        "workers), or the backlog is too small for bursts (`listen(2)` backlog, `net.core.somaxconn`)"
    ),
    "tcp_resets": (
        "who resets: a crashing peer, a firewall, timeouts; `ss -tan state syn-sent`; `tcpdump "
        "'tcp[tcpflags] & tcp-rst != 0'`"
    ),
    "udp_errors": (
        "rcvbuf errors: a slow reader or a small `SO_RCVBUF` (`ss -uanm`, `net.core.rmem_max`); checksum "
        "errors"
    ),
    "softnet": (
        "per-CPU softnet counters: one CPU taking all the interrupts (`/proc/interrupts`, RPS/RSS), "
        "`net.core.netdev_max_backlog`, `net.core.netdev_budget`"
    ),
    "file_handles": (
        "who holds them: `ls /proc/*/fd | wc -l` per process, `lsof | awk '{print $1}' | sort | uniq -c | "
        "sort -n`"
    ),
    "process_cpu": (
        "`top -p PID` or `pidstat -p PID 1` (user vs system time), `perf top -p PID`; is it meant to run "
        "now (a batch job, a runaway loop)? `renice` it or give it a CPU quota"
    ),
    "process_rss_growing": (
        "`grep -E 'VmRSS|RssAnon|RssFile' /proc/PID/status` a few times: a warm-up levels off, a leak "
        "keeps growing (with an agent running, `diag` names a leak as `process_rss_leak`)"
    ),
    "process_rss_leak": (
        "its heap: `pmap -x PID | sort -k3 -n | tail`, `/proc/PID/smaps_rollup`; its own caches and "
        "queues without bounds; restart it before `memory_low` or the OOM killer does"
    ),
    "process_fd_limit": (
        "what it holds: `ls -l /proc/PID/fd | awk '{print $NF}' | sort | uniq -c | sort -n` (leaked "
        "sockets or files?); `cat /proc/PID/limits`; raise `LimitNOFILE=` of the unit (or `ulimit -n`) if "
        "the load is real"
    ),
    "user_nproc_limit": (
        "a fork or thread leak: `ps -u USER -o pid,nlwp,cmd --sort=-nlwp | head`; `ulimit -u` of the "
        "service (`LimitNPROC=`, `/etc/security/limits.conf`)"
    ),
    "kernel_oom_kill": (
        "`journalctl -k | grep -B30 'Killed process'` for the memory state at the time; the cgroup's "
        "`memory.max` and `memory.events`; `oom_score_adj` of what must survive"
    ),
    "kernel_hung_task": (
        "the call trace after the line (`dmesg -T | grep -A30 'blocked for more'`), `cat "
        "/proc/PID/stack`: the disk, NFS server or lock it waits on"
    ),
    "kernel_io_error": (
        "`dmesg -T | grep DEV`; the disk's health (`smartctl -a /dev/DEV`, `nvme smart-log`), the cable "
        "or the cloud volume; the filesystem on it (`fs_readonly`)"
    ),
    "kernel_segfault": (
        "`coredumpctl list`, `coredumpctl info PID`; the library named after `in` on the line; a crash "
        "that repeats since a deploy"
    ),
    "kernel_link": (
        "`ip -s link show DEV` (carrier changes), `ethtool DEV` (speed, duplex, link detected); the "
        "cable, the switch port, the peer"
    ),
    "kernel_tainted": (
        "which flag: P/O/E are out-of-tree or unsigned modules (often benign); D (oops), W (warning), M "
        "(machine check) or L (soft lockup) mean the kernel saw trouble: read `dmesg`"
    ),
    "netns_tcp_retransmits": (
        "loss on the container's path (its veth, bridge, overlay, a `tc` qdisc or filter): `nsenter -t "
        "PID -n ss -ti`, `nsenter -t PID -n nstat -az | grep -i retrans`; the host's own "
        '`tcp_retransmits` stays quiet because these segments are counted in the namespace only'
    ),
    "netns_listen_overflow": (
        '`nsenter -t PID -n ss -ltn` (Recv-Q vs Send-Q); the containerised service does not accept fast '
        "enough, or its backlog (and the namespace's own `net.core.somaxconn`) is too small"
    ),
    "netns_udp_errors": (
        '`nsenter -t PID -n ss -uanm` (drops per socket); a slow reader or a small `SO_RCVBUF` in the '
        'container'
    ),
}
