"""What every command shares: exit codes, the two one-line errors, the
argument parser that raises them, the host-root options, token files,
logging, and the last line of defence around a command.

Exit codes (README "Exit codes"): 0 done; 1 the command could not do its job
(:class:`CommandFailed`); 2 bad usage or configuration (:class:`UsageError`);
70 an internal error, one line (HOSTDIAG_DEBUG=1 shows the trace); 130
interrupted.
"""

import argparse
import logging
import os
import sys

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

# A token is one line; a file larger than this is not a token file.
MAX_TOKEN_BYTES = 4096


class UsageError(Exception):
    """Bad arguments or settings: ``PROG: error: MESSAGE``, exit 2."""


class CommandFailed(Exception):
    """The command could not do its job: ``PROG: MESSAGE``, exit 1."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of printing the usage and exiting."""

    def error(self, message):
        raise UsageError(message)


def add_root_options(parser):
    """--proc-root, --sys-root and --rootfs: where the host is mounted."""
    group = parser.add_argument_group("host roots")
    group.add_argument("--proc-root", default="/proc", metavar="DIR",
                       help="where the host's procfs is mounted (default /proc)")
    group.add_argument("--sys-root", default="/sys", metavar="DIR",
                       help="where the host's sysfs is mounted (default /sys)")
    group.add_argument("--rootfs", default="/", metavar="DIR",
                       help="the host's root filesystem, for os-release and /dev/kmsg (default /)")


def host_root(args):
    """The :class:`HostRoot` of the root options; UsageError naming the option
    and the path when a root is not a directory, or the procfs has no stat and meminfo."""
    from hostdiag.sources.hostroot import HostRoot

    for option, path in (("--proc-root", args.proc_root), ("--sys-root", args.sys_root),
                         ("--rootfs", args.rootfs)):
        if not os.path.exists(path):
            raise UsageError("%s: %s does not exist" % (option, path))
        if not os.path.isdir(path):
            raise UsageError("%s: %s is not a directory" % (option, path))
    root = HostRoot(args.proc_root, args.sys_root, args.rootfs)
    if not root.looks_like_procfs():
        raise UsageError("--proc-root: %s is not a procfs (it has no stat and meminfo)" % root.proc_root)
    return root


def read_token(path, key):
    """The token in the file at ``path`` (one line, surrounding blanks
    stripped); UsageError naming ``key`` (the setting or option that gave the
    path) when it is unreadable or empty. A file others may read is used, with
    a warning."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            token = f.read(MAX_TOKEN_BYTES).decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError("%s: cannot read %s: %s" % (key, path, getattr(exc, "strerror", None) or exc)) from None
    if not token:
        raise UsageError("%s: %s is empty" % (key, path))
    if mode & 0o007:
        logging.getLogger("hostdiag").warning("%s %s is readable by others (mode %03o)", key, path, mode & 0o777)
    return token


def client_address(address, tls_ca=None, tls_cert=None):
    """The transport client's address for an agent address as the settings
    and options spell it: ``unix:PATH`` and ``/PATH`` as they are,
    ``tcp:HOST:PORT`` and ``tcp://HOST:PORT`` as ``tls://`` when a CA
    (``tls_ca``) or a client certificate (``tls_cert``) is given, else as
    ``tcp://``."""
    if address.startswith("tcp://"):
        address = "tcp:" + address[len("tcp://"):]
    if address.startswith("tcp:"):
        return ("tls://" if tls_ca or tls_cert else "tcp://") + address[len("tcp:"):]
    return address


class _JournalFormatter(logging.Formatter):
    """`<N>message`: journald reads the syslog priority from the prefix."""

    PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
                  logging.DEBUG: 7}

    def format(self, record):
        return "<%d>%s" % (self.PRIORITIES.get(record.levelno, 6), super().format(record))


def setup_logging(foreground):
    """The daemons' log on stderr: with timestamps for a terminal
    (``foreground``), else with the syslog priority prefix journald reads."""
    handler = logging.StreamHandler(sys.stderr)
    if foreground:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    root = logging.getLogger("hostdiag")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def report_internal_error(program, exc):
    """Write ``program: internal error: ...`` for ``exc``; re-raise it under HOSTDIAG_DEBUG."""
    if os.environ.get("HOSTDIAG_DEBUG"):
        raise exc
    sys.stderr.write("%s: internal error: %s: %s (set HOSTDIAG_DEBUG=1 for a trace)\n"
                     % (program, type(exc).__name__, exc))


def run_command(program, body):
    """``body()``'s exit code, with every way out of it turned into one line
    on stderr and its exit code (see the module doc)."""
    try:
        return body()
    except UsageError as exc:
        sys.stderr.write("%s: error: %s\n" % (program, exc))
        return EXIT_USAGE
    except CommandFailed as exc:
        sys.stderr.write("%s: %s\n" % (program, exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (diag | head); nothing left to say to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, never a trace
        report_internal_error(program, exc)
        return EXIT_INTERNAL
