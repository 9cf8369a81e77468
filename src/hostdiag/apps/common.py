"""The last line of defence of every command: an unexpected error is one line
on stderr, never a traceback, unless HOSTDIAG_DEBUG asks for the trace."""

import os
import sys


def report_internal_error(program, exc):
    """Write ``program: internal error: ...`` for ``exc``; re-raise it under HOSTDIAG_DEBUG."""
    if os.environ.get("HOSTDIAG_DEBUG"):
        raise exc
    sys.stderr.write("%s: internal error: %s: %s (set HOSTDIAG_DEBUG=1 for a trace)\n"
                     % (program, type(exc).__name__, exc))
