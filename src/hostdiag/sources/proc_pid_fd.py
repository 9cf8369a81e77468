"""/proc/PID/fd and /proc/PID/comm: which processes hold given socket inodes."""

import os

from hostdiag.parsers.procraces import DENIED, VANISHED, classify
from hostdiag.sources.hostroot import ACCESS_DENIED, MISSING, SourceError, error_kind

SOURCE = "sockets"


def map_pids(root, inodes, problems):
    """``{inode: [{"pid", "comm"}]}`` for the given socket inodes, from /proc/*/fd.

    On demand and for the sockets shown only: it reads every descriptor link
    of every process until each inode has a holder, then stops, so an inode
    shared by several processes (after fork) lists those found before the
    walk ended. Failed reads are classed by the race policy of
    :mod:`hostdiag.parsers.procraces`: a process that vanishes mid-walk is
    skipped and counted; one whose descriptors may not be read is skipped and
    counted too; both are recorded in ``problems``. Inodes no process holds (time-wait sockets,
    kernel sockets) are absent from the result.
    """
    wanted = {"socket:[%d]" % i: i for i in inodes if i}
    found = {}
    if not wanted:
        return found
    try:
        names = os.listdir(root.proc())
    except OSError as exc:
        problems.add(SOURCE, root.proc(), error_kind(exc), exc.strerror or str(exc))
        return found
    pids = sorted(int(n) for n in names if n.isdigit())
    vanished = denied = 0
    missing = set(wanted.values())
    for pid in pids:
        fd_dir = root.proc(str(pid), "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError as exc:
            race = classify(exc.errno)
            if race == VANISHED:
                vanished += 1
            elif race == DENIED:
                denied += 1
            else:
                problems.add(SOURCE, fd_dir, error_kind(exc), exc.strerror or str(exc))
            continue
        held = []
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                # The descriptor was closed (or the process exited) since the listing.
                continue
            inode = wanted.get(target)
            if inode is not None:
                held.append(inode)
        if not held:
            continue
        comm = _comm(root, pid)
        if comm is None:
            vanished += 1
            continue
        for inode in held:
            holders = found.setdefault(inode, [])
            if not any(h["pid"] == pid for h in holders):
                holders.append({"pid": pid, "comm": comm})
            missing.discard(inode)
        if not missing:
            break
    if vanished:
        problems.add(SOURCE, root.proc("*", "fd"), MISSING,
                     "%d process(es) vanished during the descriptor walk" % vanished, vanished)
    if denied:
        problems.add(SOURCE, root.proc("*", "fd"), ACCESS_DENIED,
                     "descriptors of %d process(es) not readable" % denied, denied)
    return found


def _comm(root, pid):
    try:
        data = root.read(root.proc(str(pid), "comm"), cap=4096)
    except SourceError:
        return None
    return data.rstrip(b"\n").decode("utf-8", "replace")
