"""What the real-fault tests of the findings share: the rules a scene over
a pair of snapshots is judged with on this shared machine, and polling.

The machine runs other test suites meanwhile, which load its CPUs, grow
compilers in memory, OOM-kill in their own cgroups, reset and retransmit
connections and log to the kernel. :data:`RULES_UNDER_TEST` is every rule but those
that judge these host-wide measures (:data:`NOISY`); the ranking itself is tested on
edited snapshots (test_ranking.py).
"""

import time

from cgroupscenes import DEADLINE_S
from hostdiag.findings import RULES, rules as R

NOISY = {
    R.rule_process_cpu, R.rule_process_rss_growing, R.rule_load, R.rule_cpu_states, R.rule_one_cpu_busy,
    R.rule_pressure, R.rule_swapping, R.rule_major_faults, R.rule_disk_util, R.rule_disk_await,
    R.rule_memory_available, R.rule_tcp_resets, R.rule_tcp_retransmits, R.rule_tcp_listen, R.rule_udp_errors,
    R.rule_oom_kills, R.rule_kernel_events, R.rule_kernel_log,
    R.rule_cgroup_oom_kills, R.rule_cgroup_pids, R.rule_cgroup_throttling, R.rule_cgroup_memory,
    R.rule_cgroup_pressure,
}
RULES_UNDER_TEST = tuple(rule for rule in RULES if rule not in NOISY)
MIB = 1 << 20


def poll(condition, what, deadline_s=DEADLINE_S):
    """Poll ``condition()`` every 10 ms until it is true (its value), at most ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting for %s" % what
        time.sleep(0.01)
