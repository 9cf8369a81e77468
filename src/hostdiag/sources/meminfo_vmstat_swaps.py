"""Memory: /proc/meminfo, /proc/vmstat and /proc/swaps."""

from hostdiag.parsers import parse_keyvalue
from hostdiag.parsers.swaps import parse_swaps

SOURCE = "memory"


class MemorySource:
    """The memory section of one collector's samples; every file is read each sample."""

    def __init__(self, root):
        self.root = root
        self._meminfo = root.proc("meminfo")
        self._vmstat = root.proc("vmstat")
        self._swaps = root.proc("swaps")

    def collect(self, problems):
        """The memory section, or None when neither meminfo nor vmstat can be read."""
        root = self.root
        meminfo = problems.parse(root, SOURCE, self._meminfo, parse_keyvalue)
        vmstat = problems.parse(root, SOURCE, self._vmstat, parse_keyvalue)
        swaps = problems.parse(root, SOURCE, self._swaps, parse_swaps)
        if meminfo is None and vmstat is None:
            return None
        return {"meminfo": meminfo, "vmstat": vmstat, "swaps": swaps}
