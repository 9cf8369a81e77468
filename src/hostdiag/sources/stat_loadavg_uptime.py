"""CPU: /proc/stat, /proc/loadavg and /proc/uptime."""

from hostdiag.parsers import parse_stat
from hostdiag.parsers.loadavg import parse_loadavg
from hostdiag.parsers.uptime import parse_uptime

SOURCE = "cpu"


class CpuSource:
    """The cpu section of one collector's samples; every file is read each sample."""

    def __init__(self, root):
        self.root = root
        self._stat = root.proc("stat")
        self._loadavg = root.proc("loadavg")
        self._uptime = root.proc("uptime")

    def collect(self, problems):
        """The cpu section as plain data, or None when /proc/stat cannot be read."""
        root = self.root
        stat = problems.parse(root, SOURCE, self._stat, parse_stat)
        loadavg = problems.parse(root, SOURCE, self._loadavg, parse_loadavg)
        uptime = problems.parse(root, SOURCE, self._uptime, parse_uptime)
        if stat is None:
            return None
        stat["loadavg"] = loadavg
        stat["uptime"] = uptime
        return stat
