"""/proc/pressure/{cpu,memory,io}: pressure stall information (PSI).

Like every parser it takes bytes, does no I/O and returns ``(result, malformed)``.
"""

import re

from hostdiag.parsers.textvalues import finite_float, unsigned

_PSI_KEYS = ("avg10", "avg60", "avg300")

# A /proc/pressure file exactly as the kernel prints it (kernel/sched/psi.c,
# "%s avg10=%lu.%02lu avg60=%lu.%02lu avg300=%lu.%02lu total=%llu\n"), matched
# whole: this is what every sample reads, and one match costs less than
# tokenising the lines. Anything else takes the general path below.
_PSI_AVG = rb"(\d{1,9}\.\d\d)"
_PSI_FILE = re.compile(
    rb"some avg10=%s avg60=%s avg300=%s total=(\d{1,20})\n"
    rb"(?:full avg10=%s avg60=%s avg300=%s total=(\d{1,20})\n)?" % ((_PSI_AVG,) * 6))
# PSI averages as the kernel names them -> the result's key.
_PSI_AVERAGES = {key.encode(): key for key in _PSI_KEYS}


def parse_pressure(data):
    """/proc/pressure/<resource> → {"some": {...}, "full": {...} or None}.

    avg10/avg60/avg300 are percentages of wall time; total is microseconds
    stalled since boot. The cpu file has no "full" line before 5.13.
    """
    match = _PSI_FILE.fullmatch(data)
    if match is not None:
        values = match.groups()
        full = None
        if values[4] is not None:
            full = {"avg10": float(values[4]), "avg60": float(values[5]),
                    "avg300": float(values[6]), "total_us": int(values[7])}
        return {"some": {"avg10": float(values[0]), "avg60": float(values[1]),
                         "avg300": float(values[2]), "total_us": int(values[3])},
                "full": full}, 0
    result = {"some": None, "full": None}
    malformed = 0
    for line in data.split(b"\n"):
        tokens = line.split()
        if not tokens:
            continue
        kind = tokens[0]
        if kind != b"some" and kind != b"full":
            malformed += 1
            continue
        values = {}
        for tok in tokens[1:]:
            key, eq, raw = tok.partition(b"=")
            if not eq:
                break
            if key == b"total":
                values["total_us"] = unsigned(raw)
            elif key in _PSI_AVERAGES:
                values[_PSI_AVERAGES[key]] = finite_float(raw)
        if len(values) != 4 or None in values.values():
            malformed += 1
            continue
        result["some" if kind == b"some" else "full"] = values
    if result["some"] is None:
        return None, malformed or 1
    return result, malformed
