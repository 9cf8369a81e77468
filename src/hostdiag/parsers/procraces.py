"""What a failed read of /proc/PID means: the one policy for process races.

Both twins of the process scan (``parsers/procpid.py``, ``csrc/_procpid.pyx``,
which loads these tables at import) and every source that reads /proc/PID
(``sources/proc_pid.py``, ``sources/proc_pid_fd.py``) class a failed read with
:func:`classify`, as psutil's ``wrap_exceptions`` does for its Process methods:

* :data:`VANISHED` (ENOENT, ESRCH): the process is gone, or only the file is
  (see below);
* :data:`DENIED` (EACCES, EPERM): that file may not be read; its fields are
  None and its group is listed in the record's ``denied``; the process stays;
* :data:`OTHER` (any other errno): its fields are None and the failure is one
  meta error entry per (file, errno), counted, never one per process.

A process has vanished only when its :data:`REQUIRED_FILE` (``stat``) can no
longer be found, or its /proc/PID directory no longer opened. A VANISHED errno
from any other file while ``stat`` is still there means that file is absent (a
kernel without that feature, a recorded tree from another machine): the file's
fields are None, and it is reported as OTHER is, under the kind "missing".
"""

import errno

VANISHED = "vanished"
DENIED = "denied"
OTHER = "other"

VANISHED_ERRNOS = (errno.ENOENT, errno.ESRCH)
DENIED_ERRNOS = (errno.EACCES, errno.EPERM)

# The file whose absence means the process is gone.
REQUIRED_FILE = "stat"


def classify(err):
    """:data:`VANISHED`, :data:`DENIED` or :data:`OTHER` for an errno."""
    if err in VANISHED_ERRNOS:
        return VANISHED
    if err in DENIED_ERRNOS:
        return DENIED
    return OTHER
