"""Ranking findings by cause: one finding per cause, its symptoms under it.

When a cause and the symptoms it explains both fire (a process burning the
CPUs, and the CPUs busy, PSI cpu and the load; processes stuck in D state,
and iowait and io pressure; connections that retransmit, and the host's
retransmit ratio; a full softnet backlog, and the drops of the links it
serves), the symptoms leave the top level and go into the
cause's ``symptoms``: ``[{"id", "severity", "title", "subject", "evidence"}]``.
:data:`FOLDS` says which; a symptom goes under the first cause in it that is
present; a cause takes the worst severity of its symptoms, and a cause
without culprits takes those of its first symptom that has some (a cgroup
whose only process the OOM killer took names the victim from the kernel log).

Then the order: what is happening now before what happened before (an OOM
kill since boot, a kernel log line older than the interval: ``when`` "past"),
crit before warn, and otherwise the order of the rules, which lists the causes
with a culprit before the host-wide symptoms
(:data:`hostdiag.findings.rules.RULES`).
"""

from hostdiag.findings.culprits import culprit_text
from hostdiag.findings.finding import CRIT, NOW, WARN

_SEVERITY_ORDER = {CRIT: 0, WARN: 1}

# How a symptom is matched to a cause: the same ``when`` (both now, or both
# past); the same process among their culprits (a hung task logged minutes
# ago for a process still in D now); the same subject (one cgroup).
SAME_WHEN = "same when"
SAME_PROCESS = "same process"
SAME_SUBJECT = "same subject"

_MEMORY_SYMPTOMS = ("memory_low", "psi_memory_some", "psi_memory_full", "swapping", "major_faults")

# (cause id, symptom ids, match), in the order causes are chosen.
FOLDS = (
    ("cgroup_oom_kill", ("oom_kill", "kernel_oom_kill"), SAME_WHEN),
    ("oom_kill", ("kernel_oom_kill",), SAME_WHEN),
    ("kernel_oom_kill", ("oom_kill_since_boot",), SAME_WHEN),
    ("cgroup_cpu_throttled", ("cgroup_pressure",), SAME_SUBJECT),
    ("process_cpu", ("cpu_busy", "cpu_one_busy", "psi_cpu_some", "load_high"), SAME_WHEN),
    ("procs_d_state", ("cpu_iowait", "psi_io_some", "load_high"), SAME_WHEN),
    ("procs_d_state", ("kernel_hung_task",), SAME_PROCESS),
    ("process_rss_leak", ("process_rss_growing",) + _MEMORY_SYMPTOMS, SAME_WHEN),
    ("process_rss_growing", _MEMORY_SYMPTOMS, SAME_WHEN),
    ("tcp_listener_full", ("tcp_listen_overflow",), SAME_WHEN),
    ("tcp_conn_retrans", ("tcp_retransmits",), SAME_WHEN),
    # The kernel counts a packet its backlog drops in the device's rx_dropped too.
    ("softnet", ("nic_drops",), SAME_WHEN),
)


def _pids(found):
    return {c.get("pid") for c in found["culprits"] if isinstance(c, dict) and c.get("pid") is not None}


def _matches(cause, symptom, match):
    if match == SAME_WHEN:
        return cause["when"] == symptom["when"]
    if match == SAME_PROCESS:
        return bool(_pids(cause) & _pids(symptom))
    return cause["subject"] == symptom["subject"]


def _as_symptom(found):
    return {"id": found["id"], "severity": found["severity"], "title": found["title"],
            "subject": found["subject"], "evidence": found["evidence"]}


def fold(found):
    """``found`` with each symptom moved under the first cause that explains
    it (:data:`FOLDS`); the list is changed in place and returned."""
    for cause_id, symptom_ids, match in FOLDS:
        causes = [f for f in found if f["id"] == cause_id]
        if not causes:
            continue
        kept = []
        for candidate in found:
            cause = None
            if candidate["id"] in symptom_ids:
                cause = next((c for c in causes if c is not candidate and _matches(c, candidate, match)), None)
            if cause is None:
                kept.append(candidate)
                continue
            if not cause["culprits"] and candidate["culprits"]:
                cause["culprits"] = list(candidate["culprits"])
                cause["title"] = "%s; %s" % (cause["title"], culprit_text(cause["culprits"][0]))
            cause["symptoms"].append(_as_symptom(candidate))
            cause["symptoms"].extend(candidate["symptoms"])
            if _SEVERITY_ORDER[candidate["severity"]] < _SEVERITY_ORDER[cause["severity"]]:
                cause["severity"] = candidate["severity"]
        found[:] = kept
    return found


def rank(found):
    """The findings folded by cause and ordered: now before past, crit
    before warn, then in rule order (the order of ``found``)."""
    fold(found)
    return sorted(found, key=lambda f: (f["when"] != NOW, _SEVERITY_ORDER[f["severity"]]))
