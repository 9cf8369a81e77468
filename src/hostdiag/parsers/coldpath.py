"""Parsers for the small files read once per sample or once per run.

Like the hot parsers they take bytes, do no I/O and return ``(result,
malformed)``. They are cheap enough that no compiled twin pays for itself.
"""

import re

_PSI_KEYS = ("avg10", "avg60", "avg300")


def _decode(raw):
    return raw.decode("utf-8", "replace")


def _float(tok):
    try:
        value = float(tok)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def _uint(tok):
    return int(tok) if tok.isdigit() and len(tok) <= 20 else None


def parse_loadavg(data):
    """/proc/loadavg → {"load1","load5","load15","runnable","threads","last_pid"}."""
    tokens = data.split()
    if len(tokens) < 5 or tokens[3].count(b"/") != 1:
        return None, 1
    loads = [_float(t) for t in tokens[:3]]
    running, _, threads = tokens[3].partition(b"/")
    ints = [_uint(running), _uint(threads), _uint(tokens[4])]
    if None in loads or None in ints:
        return None, 1
    return {
        "load1": loads[0], "load5": loads[1], "load15": loads[2],
        "runnable": ints[0], "threads": ints[1], "last_pid": ints[2],
    }, 0


def parse_uptime(data):
    """/proc/uptime → {"uptime_s", "idle_s"} (idle is summed over CPUs)."""
    tokens = data.split()
    values = [_float(t) for t in tokens[:2]]
    if len(values) != 2 or None in values:
        return None, 1
    return {"uptime_s": values[0], "idle_s": values[1]}, 0


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
                values["total_us"] = _uint(raw)
            elif key in _PSI_AVERAGES:
                values[_PSI_AVERAGES[key]] = _float(raw)
        if len(values) != 4 or None in values.values():
            malformed += 1
            continue
        result["some" if kind == b"some" else "full"] = values
    if result["some"] is None:
        return None, malformed or 1
    return result, malformed


def parse_swaps(data):
    """/proc/swaps → [{"filename","type","size_bytes","used_bytes","priority"}]."""
    result = []
    malformed = 0
    for line in data.split(b"\n")[1:]:
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 5:
            malformed += 1
            continue
        size, used = _uint(tokens[2]), _uint(tokens[3])
        try:
            priority = int(tokens[4])
        except ValueError:
            priority = None
        if size is None or used is None or priority is None:
            malformed += 1
            continue
        # Octal escapes (\040) in the name are how the kernel prints spaces.
        result.append({
            "filename": _unescape(tokens[0]), "type": _decode(tokens[1]),
            "size_bytes": size * 1024, "used_bytes": used * 1024, "priority": priority,
        })
    return result, malformed


def _unescape(raw):
    """Undo the kernel's octal escaping of space, tab, newline and backslash."""
    if b"\\" not in raw:
        return _decode(raw)
    out = bytearray()
    i = 0
    while i < len(raw):
        chunk = raw[i + 1:i + 4]
        if raw[i:i + 1] == b"\\" and len(chunk) == 3 and all(48 <= c <= 55 for c in chunk):
            out.append(int(chunk, 8) & 0xFF)
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return _decode(bytes(out))


def parse_mountinfo(data):
    """/proc/self/mountinfo → [{"mount_id","parent_id","major","minor","root",
    "mountpoint","options","fstype","source","super_options"}]."""
    result = []
    malformed = 0
    for line in data.split(b"\n"):
        tokens = line.split(b" ")
        if not line.strip():
            continue
        try:
            sep = tokens.index(b"-", 6)
        except ValueError:
            malformed += 1
            continue
        if len(tokens) < sep + 3 or tokens[2].count(b":") != 1:
            malformed += 1
            continue
        major, _, minor = tokens[2].partition(b":")
        ids = [_uint(tokens[0]), _uint(tokens[1]), _uint(major), _uint(minor)]
        if None in ids:
            malformed += 1
            continue
        result.append({
            "mount_id": ids[0], "parent_id": ids[1], "major": ids[2], "minor": ids[3],
            "root": _unescape(tokens[3]), "mountpoint": _unescape(tokens[4]),
            "options": _decode(tokens[5]), "fstype": _decode(tokens[sep + 1]),
            "source": _unescape(tokens[sep + 2]),
            "super_options": _decode(tokens[sep + 3]) if len(tokens) > sep + 3 else None,
        })
    return result, malformed


def parse_file_nr(data):
    """/proc/sys/fs/file-nr → {"allocated","unused","max"} file handles."""
    values = [_uint(t) for t in data.split()]
    if len(values) != 3 or None in values:
        return None, 1
    return {"allocated": values[0], "unused": values[1], "max": values[2]}, 0


def parse_single_int(data):
    """A file holding one decimal integer (pid_max, threads-max, tainted)."""
    tokens = data.split()
    if len(tokens) != 1:
        return None, 1
    try:
        return int(tokens[0]), 0
    except ValueError:
        return None, 1


def parse_os_release(data):
    """os-release(5): KEY=value lines, values optionally quoted."""
    result = {}
    malformed = 0
    for line in data.split(b"\n"):
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        key, eq, value = line.partition(b"=")
        if not eq or not key.replace(b"_", b"").isalnum():
            malformed += 1
            continue
        if len(value) >= 2 and value[:1] in (b'"', b"'") and value[-1:] == value[:1]:
            value = value[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
        result[_decode(key)] = _decode(value)
    return result, malformed


# Kernel taint bits (Documentation/admin-guide/tainted-kernels.rst), bit → letter.
TAINT_FLAGS = "PFSRMBUDAWCIOELKXTN"


def taint_letters(value):
    """The letters the kernel prints for a tainted mask, in bit order."""
    return "".join(letter for bit, letter in enumerate(TAINT_FLAGS) if value >> bit & 1)


KMSG_LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


def parse_kmsg_record(record):
    """One /dev/kmsg record "prio,seq,usec,flags;message\\n..." →
    {"severity","level","facility","seq","ts_us","message"} or None when malformed."""
    head, semi, rest = record.partition(b";")
    fields = head.split(b",")
    if not semi or len(fields) < 3:
        return None
    prio, seq, usec = (_uint(f) for f in fields[:3])
    if prio is None or seq is None or usec is None:
        return None
    message = rest.split(b"\n", 1)[0]
    return {
        "severity": prio & 7, "level": KMSG_LEVELS[prio & 7], "facility": prio >> 3,
        "seq": seq, "ts_us": usec, "message": _unescape_kmsg(message),
    }


def _unescape_kmsg(raw):
    """/dev/kmsg escapes non-printable bytes as \\xHH."""
    if b"\\x" not in raw:
        return _decode(raw)
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i:i + 2] == b"\\x" and len(raw[i + 2:i + 4]) == 2:
            try:
                out.append(int(raw[i + 2:i + 4], 16))
                i += 4
                continue
            except ValueError:
                pass
        out.append(raw[i])
        i += 1
    return _decode(bytes(out))
