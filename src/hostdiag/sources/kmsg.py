"""/dev/kmsg: the newest kernel log records of warning level or worse, and
the lower-level ones that name an event (:func:`hostdiag.parsers.kmsg.kernel_event`:
the ``oom-kill:`` line with the victim's cgroup, segfaults, NIC links going
up or down are logged at info level)."""

import os

from hostdiag.parsers.kmsg import kernel_event, parse_kmsg_record
from hostdiag.sources.hostroot import SourceError, error_kind

SOURCE = "kernel"
# Levels 0..4: emerg, alert, crit, err, warning.
KMSG_WORST_LEVEL = 4
# /dev/kmsg holds the whole kernel ring buffer: records read at most per call,
# and the newest lines kept of them.
KMSG_MAX_LINES = 50
KMSG_MAX_RECORDS = 20000
# One record is at most this long (the kernel's CONSOLE_EXT_LOG_MAX is 8 KiB).
KMSG_RECORD_BYTES = 8192


def read_kmsg(root, problems, max_lines=KMSG_MAX_LINES):
    """The newest ``max_lines`` records of warning level or worse, or naming
    an event, in /dev/kmsg, oldest first, or None when it cannot be read."""
    path = root.host("dev", "kmsg")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        problems.add(SOURCE, path, error_kind(exc), exc.strerror or str(exc))
        return None
    lines = []
    try:
        for _ in range(KMSG_MAX_RECORDS):
            try:
                record = os.read(fd, KMSG_RECORD_BYTES)
            except BlockingIOError:
                break
            except BrokenPipeError:
                # EPIPE: the record was overwritten while we read; the next read resumes.
                continue
            except OSError as exc:
                raise SourceError(error_kind(exc), path, exc.strerror or str(exc)) from None
            if not record:
                break
            entry = parse_kmsg_record(record)
            if entry is not None and (entry["severity"] <= KMSG_WORST_LEVEL
                                      or kernel_event(entry["message"]) is not None):
                lines.append(entry)
                if len(lines) > max_lines:
                    del lines[0]
    except SourceError as exc:
        problems.add(SOURCE, exc.path, exc.kind, exc.message)
        return None
    finally:
        os.close(fd)
    return lines
