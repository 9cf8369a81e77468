"""/dev/kmsg: one record of the kernel log ("prio,seq,usec,flags;message").

Takes the bytes of one record and does no I/O; a malformed record gives None.
:func:`kernel_event` reads what a message names (an OOM victim, a hung task,
an I/O error, a segfault, a link going up or down).
"""

import re

from hostdiag.parsers.textvalues import decode, unsigned


KMSG_LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


def parse_kmsg_record(record):
    """One /dev/kmsg record "prio,seq,usec,flags;message\\n..." →
    {"severity","level","facility","seq","ts_us","message"} or None when malformed."""
    head, semi, rest = record.partition(b";")
    fields = head.split(b",")
    if not semi or len(fields) < 3:
        return None
    prio, seq, usec = (unsigned(f) for f in fields[:3])
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
        return decode(raw)
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
    return decode(bytes(out))


# The kernel log lines that name an event, as the kernel formats them
# (mm/oom_kill.c, kernel/hung_task.c, block/blk-core.c and fs/buffer.c,
# arch/x86/mm/fault.c and traps.c, the NIC drivers' link messages).
_OOM_VICTIM = re.compile(r"(?:Memory cgroup )?[Oo]ut of memory(?: \(oom_kill_allocating_task\))?: "
                         r"Killed process (\d+) \((.*?)\)")
_OOM_CONTEXT = re.compile(r"oom-kill:(\S+)")
_HUNG_TASK = re.compile(r"INFO: task (.+):(\d+) blocked for more than (\d+) seconds")
_IO_ERROR = re.compile(r"(?:Buffer )?I/O error,? (?:on )?dev ([\w.:/-]+),")
_SEGFAULT = re.compile(r"(.+?)\[(\d+)\]:? (segfault|general protection fault|trap [\w ]+?) (?:at|ip)\b")
_LINK = re.compile(r"(?:^|\s)([\w.@-]+): (?:NIC )?[Ll]ink is (Up|Down)\b")


def _oom_context(fields):
    """The ``oom-kill:`` line's key=value list: the victim's pid, comm and cgroup."""
    values = dict(item.partition("=")[::2] for item in fields.split(","))
    pid = unsigned(values.get("pid", "").encode())
    if pid is None:
        return None
    return {"event": "oom_kill", "pid": pid, "comm": values.get("task"),
            "cgroup": values.get("task_memcg") or None, "constraint": values.get("constraint")}


def kernel_event(message):
    """What a kernel log message says happened, or None for a line that names
    no event::

        {"event": "oom_kill", "pid", "comm"} (the "Killed process" line), or
            with "cgroup" and "constraint" (the "oom-kill:" line, info level)
        {"event": "hung_task", "pid", "comm", "blocked_s"}
        {"event": "io_error", "device"}
        {"event": "segfault", "pid", "comm", "kind"} (segfault, general
            protection fault, trap)
        {"event": "link", "device", "state": "up" | "down"}
    """
    if not isinstance(message, str):
        return None
    match = _OOM_VICTIM.search(message)
    if match:
        return {"event": "oom_kill", "pid": int(match.group(1)), "comm": match.group(2)}
    match = _OOM_CONTEXT.match(message)
    if match:
        return _oom_context(match.group(1))
    match = _HUNG_TASK.search(message)
    if match:
        return {"event": "hung_task", "pid": int(match.group(2)), "comm": match.group(1),
                "blocked_s": int(match.group(3))}
    match = _IO_ERROR.search(message)
    if match:
        return {"event": "io_error", "device": match.group(1)}
    match = _SEGFAULT.match(message)
    if match:
        return {"event": "segfault", "pid": int(match.group(2)), "comm": match.group(1).rsplit(" ", 1)[-1],
                "kind": match.group(3)}
    match = _LINK.search(message)
    if match:
        return {"event": "link", "device": match.group(1), "state": match.group(2).lower()}
    return None
