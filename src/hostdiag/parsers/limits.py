"""/proc/PID/limits: a process's resource limits, soft and hard.

The kernel prints one line per limit under a header: the name padded to 25
columns, the soft and hard values padded to 20 (``unlimited`` or a decimal
number), then the unit, which some limits lack::

    Limit                     Soft Limit           Hard Limit           Units
    Max open files            1024                 1048576              files

Takes bytes, does no I/O, returns ``(result, malformed)`` like every parser.
"""

import re

from hostdiag.parsers.textvalues import decode, unsigned

# The limits read, by the kernel's name: the key they are kept under.
LIMIT_KEYS = {"Max open files": "nofile", "Max processes": "nproc"}
_COLUMNS = re.compile(r"\s{2,}")


def _value(text):
    """A limit's value: None for ``unlimited``; False when malformed."""
    if text == "unlimited":
        return None
    value = unsigned(text.encode())
    return False if value is None else value


def parse_limits(data):
    """/proc/PID/limits → {"nofile": [soft, hard], "nproc": [soft, hard]}
    (None for unlimited) for the limits of :data:`LIMIT_KEYS` that the file
    has; a line of them that cannot be read is skipped and counted."""
    result = {}
    malformed = 0
    for line in decode(data).splitlines()[1:]:
        columns = _COLUMNS.split(line.strip())
        key = LIMIT_KEYS.get(columns[0])
        if key is None:
            continue
        values = [_value(c) for c in columns[1:3]]
        if len(values) != 2 or False in values:
            malformed += 1
            continue
        result[key] = values
    return result, malformed


def stat_start_time(data):
    """The start time (field 22, clock ticks after boot) of a /proc/PID/stat,
    with which the limits reader checks that a pid still names the process
    it scanned; None when malformed."""
    fields = data.rpartition(b")")[2].split()
    # fields[0] is field 3 (state).
    return unsigned(fields[19]) if len(fields) > 19 else None
