"""Kernel and host identity, limits, and recent kernel log lines."""

import os

from hostdiag.hostpaths import SourceError, error_kind
from hostdiag.parsers.coldpath import (
    parse_file_nr, parse_kmsg_record, parse_os_release, parse_single_int, taint_letters,
)

# Levels 0..4: emerg, alert, crit, err, warning.
KMSG_WORST_LEVEL = 4
# /dev/kmsg holds the whole kernel ring buffer; keep the newest lines only.
KMSG_MAX_LINES = 50
KMSG_MAX_RECORDS = 20000


def _text(root, problems, *parts):
    data = problems.read(root, "kernel", root.proc(*parts))
    return None if data is None else data.strip().decode("utf-8", "replace")


def collect_kernel(root, problems, kmsg=False):
    """Identity (hostname, os-release, uname, boot id), taint, file handles,
    pid and thread limits; with ``kmsg``, recent warning-or-worse kernel log
    lines (live root only)."""
    tainted = problems.parse(root, "kernel", root.proc("sys", "kernel", "tainted"), parse_single_int)
    os_release = None
    for candidate in ("etc/os-release", "usr/lib/os-release"):
        path = root.host(candidate)
        if os.path.exists(path):
            os_release = problems.parse(root, "kernel", path, parse_os_release)
            break
    else:
        problems.read(root, "kernel", root.host("etc/os-release"))
    uname = {
        "sysname": _text(root, problems, "sys", "kernel", "ostype"),
        "release": _text(root, problems, "sys", "kernel", "osrelease"),
        "version": _text(root, problems, "sys", "kernel", "version"),
        "machine": os.uname().machine if root.live else None,
    }
    section = {
        "hostname": _text(root, problems, "sys", "kernel", "hostname"),
        "boot_id": _text(root, problems, "sys", "kernel", "random", "boot_id"),
        "os_release": os_release,
        "uname": uname,
        "tainted": tainted,
        "taint_flags": taint_letters(tainted) if tainted is not None else None,
        "file_nr": problems.parse(root, "kernel", root.proc("sys", "fs", "file-nr"), parse_file_nr),
        "pid_max": problems.parse(root, "kernel", root.proc("sys", "kernel", "pid_max"), parse_single_int),
        "threads_max": problems.parse(
            root, "kernel", root.proc("sys", "kernel", "threads-max"), parse_single_int),
        "kmsg": None,
    }
    if kmsg and root.live:
        section["kmsg"] = read_kmsg(root, problems)
    return section


def read_kmsg(root, problems, max_lines=KMSG_MAX_LINES):
    """The newest ``max_lines`` records of warning level or worse in /dev/kmsg,
    oldest first, or None when it cannot be read."""
    path = root.host("dev", "kmsg")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        problems.add("kernel", path, error_kind(exc), exc.strerror or str(exc))
        return None
    lines = []
    try:
        for _ in range(KMSG_MAX_RECORDS):
            try:
                record = os.read(fd, 8192)
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
            if entry is not None and entry["severity"] <= KMSG_WORST_LEVEL:
                lines.append(entry)
                if len(lines) > max_lines:
                    del lines[0]
    except SourceError as exc:
        problems.add("kernel", exc.path, exc.kind, exc.message)
        return None
    finally:
        os.close(fd)
    return lines

