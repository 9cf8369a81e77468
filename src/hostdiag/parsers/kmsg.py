"""/dev/kmsg: one record of the kernel log ("prio,seq,usec,flags;message").

Takes the bytes of one record and does no I/O; a malformed record gives None.
"""

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
