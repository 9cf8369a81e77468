"""The events a snapshot's kernel log lines name (OOM victims, hung tasks,
I/O errors, segfaults, links going up or down), for the findings: each line of
``kernel.kmsg`` read by :func:`hostdiag.parsers.kmsg.kernel_event`."""

from hostdiag.derive.counters import get, is_number
from hostdiag.parsers.kmsg import kernel_event


def kmsg_lines(snapshot):
    """The kernel log lines of a snapshot (typed or a plain dict) that have a
    time: dicts with a numeric ``ts_us``."""
    kernel = snapshot.get("kernel") if isinstance(snapshot, dict) else getattr(snapshot, "kernel", None)
    lines = get(kernel, "kmsg")
    return [line for line in lines if isinstance(line, dict) and is_number(line.get("ts_us"))] \
        if isinstance(lines, list) else []


def kernel_events(snapshot):
    """[(line, event)] of the snapshot's kernel log lines that name an event,
    oldest first."""
    found = []
    for line in kmsg_lines(snapshot):
        event = kernel_event(line.get("message"))
        if event is not None:
            found.append((line, event))
    return found


def names_event(line):
    """True when a kernel log line names an event."""
    return kernel_event(line.get("message")) is not None
