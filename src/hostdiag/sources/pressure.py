"""Pressure stall information: /proc/pressure/{cpu,memory,io,irq}."""

import os

from hostdiag.sources.hostroot import MISSING
from hostdiag.parsers.pressure import parse_pressure

SOURCE = "pressure"
RESOURCES = ("cpu", "memory", "io", "irq")


class PressureSource:
    """The pressure section of one collector's samples.

    Whether the kernel has PSI at all, and an irq file (6.1 and later, with
    CONFIG_IRQ_TIME_ACCOUNTING), is fixed at boot: it is looked up in the first
    sample and kept, so later samples only read the files.
    """

    def __init__(self, root):
        self.root = root
        self._base = root.proc("pressure")
        self._paths = None  # ((resource, path or None when absent), ...)

    def _probe(self):
        if not os.path.isdir(self._base):
            return ()
        paths = []
        for resource in RESOURCES:
            path = self.root.proc("pressure", resource)
            paths.append((resource, None if resource == "irq" and not os.path.exists(path) else path))
        return tuple(paths)

    def collect(self, problems):
        """{resource: {"some": {...}, "full": {...}|None}|None}, or None without PSI.

        A kernel without PSI (older than 4.20, or booted with psi=0) has no
        /proc/pressure at all: one entry, not four.
        """
        if self._paths is None:
            self._paths = self._probe()
        if not self._paths:
            problems.add(SOURCE, self._base, MISSING, "no pressure stall information on this kernel")
            return None
        root = self.root
        return {resource: problems.parse(root, SOURCE, path, parse_pressure) if path is not None else None
                for resource, path in self._paths}
