"""/proc/uptime: seconds since boot and idle seconds.

Like every parser it takes bytes, does no I/O and returns ``(result, malformed)``.
"""

from hostdiag.parsers.textvalues import finite_float


def parse_uptime(data):
    """/proc/uptime → {"uptime_s", "idle_s"} (idle is summed over CPUs)."""
    tokens = data.split()
    values = [finite_float(t) for t in tokens[:2]]
    if len(values) != 2 or None in values:
        return None, 1
    return {"uptime_s": values[0], "idle_s": values[1]}, 0
