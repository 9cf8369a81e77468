"""/proc/loadavg: the load averages and the run queue.

Like every parser it takes bytes, does no I/O and returns ``(result, malformed)``.
"""

from hostdiag.parsers.textvalues import finite_float, unsigned


def parse_loadavg(data):
    """/proc/loadavg → {"load1","load5","load15","runnable","threads","last_pid"}."""
    tokens = data.split()
    if len(tokens) < 5 or tokens[3].count(b"/") != 1:
        return None, 1
    loads = [finite_float(t) for t in tokens[:3]]
    running, _, threads = tokens[3].partition(b"/")
    ints = [unsigned(running), unsigned(threads), unsigned(tokens[4])]
    if None in loads or None in ints:
        return None, 1
    return {
        "load1": loads[0], "load5": loads[1], "load15": loads[2],
        "runnable": ints[0], "threads": ints[1], "last_pid": ints[2],
    }, 0
