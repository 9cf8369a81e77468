"""CPU: /proc/stat, /proc/loadavg and /proc/uptime."""

from hostdiag.parsers import parse_stat
from hostdiag.parsers.coldpath import parse_loadavg, parse_uptime


def collect_cpu(root, problems):
    """The cpu section as plain data, or None when /proc/stat cannot be read."""
    stat = problems.parse(root, "cpu", root.proc("stat"), parse_stat)
    loadavg = problems.parse(root, "cpu", root.proc("loadavg"), parse_loadavg)
    uptime = problems.parse(root, "cpu", root.proc("uptime"), parse_uptime)
    if stat is None:
        return None
    stat["loadavg"] = loadavg
    stat["uptime"] = uptime
    return stat
