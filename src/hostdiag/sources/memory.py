"""Memory: /proc/meminfo, /proc/vmstat and /proc/swaps."""

from hostdiag.parsers import parse_keyvalue
from hostdiag.parsers.coldpath import parse_swaps


def collect_memory(root, problems):
    """The memory section, or None when neither meminfo nor vmstat can be read."""
    meminfo = problems.parse(root, "memory", root.proc("meminfo"), parse_keyvalue)
    vmstat = problems.parse(root, "memory", root.proc("vmstat"), parse_keyvalue)
    swaps = problems.parse(root, "memory", root.proc("swaps"), parse_swaps)
    if meminfo is None and vmstat is None:
        return None
    return {"meminfo": meminfo, "vmstat": vmstat, "swaps": swaps}
