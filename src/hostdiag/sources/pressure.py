"""Pressure stall information: /proc/pressure/{cpu,memory,io,irq}."""

import os

from hostdiag.hostpaths import MISSING
from hostdiag.parsers.coldpath import parse_pressure

RESOURCES = ("cpu", "memory", "io", "irq")


def collect_pressure(root, problems):
    """{resource: {"some": {...}, "full": {...}|None}|None}, or None without PSI.

    A kernel without PSI (older than 4.20, or booted with psi=0) has no
    /proc/pressure at all: one entry, not four. irq appeared in 6.1.
    """
    base = root.proc("pressure")
    if not os.path.isdir(base):
        problems.add("pressure", base, MISSING, "no pressure stall information on this kernel")
        return None
    result = {}
    for resource in RESOURCES:
        path = root.proc("pressure", resource)
        if resource == "irq" and not os.path.exists(path):
            result[resource] = None
            continue
        result[resource] = problems.parse(root, "pressure", path, parse_pressure)
    return result
