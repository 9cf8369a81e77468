"""The checks of the availability probes: each looks at the world once and says
whether the service answered as expected (docs/availability.md).

:func:`check` runs one probe to the end within its ``timeout`` (seconds) and
returns an :class:`Outcome`; it never raises for what the world does (a
refused connection, a bad answer, a missing file), only for a defect. The
error classes are the words of :data:`ERROR_CLASSES`. What each check costs:

- ``tcp``: one connection, closed at once.
- ``http``: one GET over a new connection (``Connection: close``), the body
  read only when a ``body`` text is expected, and then at most
  :data:`MAX_BODY_BYTES`.
- ``dns``: one ``getaddrinfo`` (the host's resolver: /etc/hosts, then DNS). It
  cannot be interrupted: the runner's deadline (sampler/probes.py) ends the
  wait for it, and the thread stays busy until the resolver's own timeout.
- ``unix``: one connection to a stream socket, closed at once.
- ``systemd``: one ``systemctl show -p ActiveState,SubState UNIT``, killed at
  the timeout.
- ``process``: a pidfile and one /proc/PID/stat, or by name every
  /proc/PID/comm (one small read per process).
"""

import errno
import http.client
import os
import socket
import ssl
import subprocess
import time
from collections import namedtuple
from urllib.parse import urlsplit

from hostdiag.parsers.procpid import list_pids
from hostdiag.sources.hostroot import SourceError

# The body bytes an http probe reads, at most, to look for its expected text.
MAX_BODY_BYTES = 64 * 1024
# Bytes of a pidfile read, at most (a pid and a newline).
MAX_PIDFILE_BYTES = 64
# Characters of the one-line ``detail`` kept.
MAX_DETAIL_CHARS = 200

ERROR_CLASSES = (
    "timeout",    # no answer within the timeout
    "refused",    # the connection was refused (nothing listens)
    "network",    # another connection failure: unreachable, reset, closed early
    "dns",        # the name does not resolve
    "tls",        # the TLS handshake or the certificate check failed
    "protocol",   # the answer is not HTTP
    "status",     # an HTTP status other than the expected one
    "body",       # the expected text is not in the body's first MAX_BODY_BYTES
    "inactive",   # the systemd unit is not active
    "systemd",    # systemd cannot be asked (not PID 1, no systemctl, no bus)
    "absent",     # no such process, pidfile or socket file
    "denied",     # permission denied
    "error",      # a defect in the check itself (logged by the runner)
)

Outcome = namedtuple("Outcome", "ok error detail")
Outcome.__doc__ = """One check's verdict: ``ok`` (bool), ``error`` (a word of
ERROR_CLASSES, None when ok) and ``detail`` (one line for people, or None)."""


def _detail(text):
    text = " ".join(str(text).split())
    return text[:MAX_DETAIL_CHARS] or None


def _failed(error, detail):
    return Outcome(False, error, _detail(detail))


def _os_failure(exc):
    """The Outcome of an OSError met while connecting or talking."""
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return _failed("timeout", "no answer in time")
    if isinstance(exc, socket.gaierror):
        return _failed("dns", exc.strerror or exc)
    if isinstance(exc, ssl.SSLError):
        return _failed("tls", getattr(exc, "verify_message", None) or exc.reason or exc)
    if isinstance(exc, ssl.CertificateError):
        return _failed("tls", exc)
    if exc.errno == errno.ECONNREFUSED:
        return _failed("refused", "connection refused")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return _failed("absent", exc.strerror or exc)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return _failed("denied", exc.strerror or exc)
    return _failed("network", exc.strerror or exc)


def check_tcp(target, timeout):
    """A TCP connection to ``target`` ("host:port" or "[ipv6]:port")."""
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        return _os_failure(exc)
    return Outcome(True, None, None)


def _read_body(response, sock, deadline):
    """Up to MAX_BODY_BYTES of the body, each read bounded by what is left of the time."""
    chunks, size = [], 0
    while size < MAX_BODY_BYTES:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        if sock is not None:
            sock.settimeout(left)
        chunk = response.read1(min(16384, MAX_BODY_BYTES - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def check_http(target, timeout, status=200, body=None):
    """A GET of the URL ``target``: the status must be ``status`` and, when
    ``body`` is given, the first MAX_BODY_BYTES of the body must hold it
    (as UTF-8). https checks the certificate against the system's CAs."""
    deadline = time.monotonic() + timeout
    parts = urlsplit(target)
    path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                           context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "hostdiag-probe", "Connection": "close"})
        response = conn.getresponse()
        if response.status != status:
            return _failed("status", "HTTP %d, expected %d" % (response.status, status))
        if body is not None:
            got = _read_body(response, conn.sock, deadline)
            if body.encode("utf-8") not in got:
                return _failed("body", "%r not in the first %d bytes of the body" % (body, len(got)))
    except http.client.HTTPException as exc:
        return _failed("protocol", "%s: %s" % (type(exc).__name__, exc))
    except OSError as exc:
        return _os_failure(exc)
    finally:
        conn.close()
    return Outcome(True, None, "HTTP %d" % status)


def check_dns(target):
    """``target`` resolves to at least one address (the host's resolver)."""
    try:
        found = socket.getaddrinfo(target, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return _failed("dns", exc.strerror or exc)
    except OSError as exc:
        return _os_failure(exc)
    if not found:
        return _failed("dns", "no address")
    return Outcome(True, None, found[0][4][0])


def check_unix(target, timeout):
    """A connection to the stream socket at the path ``target``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        sock.connect(target)
    except OSError as exc:
        return _os_failure(exc)
    finally:
        sock.close()
    return Outcome(True, None, None)


def check_systemd(target, timeout, systemctl="systemctl"):
    """The unit ``target`` is active (``systemctl show``: ActiveState=active)."""
    try:
        done = subprocess.run([systemctl, "show", "-p", "ActiveState,SubState", "--", target],
                              capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                   "SYSTEMD_PAGER": ""})
    except subprocess.TimeoutExpired:
        return _failed("timeout", "systemctl did not answer in time")
    except OSError as exc:
        return _failed("systemd", "cannot run systemctl: %s" % (exc.strerror or exc))
    text = done.stdout.decode("utf-8", "replace")
    states = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
    if done.returncode != 0 or "ActiveState" not in states:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return _failed("systemd", message[0] if message else "systemctl exited with %d" % done.returncode)
    described = "ActiveState=%s SubState=%s" % (states.get("ActiveState"), states.get("SubState"))
    if states["ActiveState"] != "active":
        return _failed("inactive", described)
    return Outcome(True, None, described)


def _running(root, pid):
    """True when /proc/PID exists under ``root`` and is not a zombie."""
    try:
        stat = root.read_proc(str(pid), "stat", cap=4096)
    except SourceError:
        return False
    fields = stat.rpartition(b")")[2].split()
    return bool(fields) and fields[0] not in (b"Z", b"X")


def check_process(root, target):
    """A live process: the pid in the pidfile ``target`` (an absolute path
    under the host's root), or one whose comm is ``target``."""
    if target.startswith("/"):
        try:
            raw = root.read(root.host(target), cap=MAX_PIDFILE_BYTES)
        except SourceError as exc:
            return _failed("denied" if exc.kind == "access_denied" else "absent",
                           "pidfile %s: %s" % (target, exc.message))
        text = raw.decode("ascii", "replace").strip()
        if not text.isdigit() or not 0 < int(text) < 2 ** 22:
            return _failed("absent", "pidfile %s holds no pid" % target)
        if not _running(root, int(text)):
            return _failed("absent", "pid %s (pidfile %s) is not running" % (text, target))
        return Outcome(True, None, "pid %s" % text)
    wanted = target.encode("utf-8", "replace")
    try:
        pids = list_pids(root.proc())
    except OSError as exc:
        return _failed("denied" if exc.errno in (errno.EACCES, errno.EPERM) else "absent",
                       "%s: %s" % (root.proc(), exc.strerror or exc))
    for pid in pids:
        try:
            comm = root.read_proc(str(pid), "comm", cap=64)
        except SourceError:
            continue  # gone meanwhile
        if comm.rstrip(b"\n") == wanted and _running(root, pid):
            return Outcome(True, None, "pid %d" % pid)
    return _failed("absent", "no process named %s" % target)


def check(probe, root):
    """Run ``probe`` (a ProbeEntry of the settings: kind, target, timeout,
    status, body) once against the host ``root``; its :class:`Outcome`."""
    kind, target, timeout = probe.kind, probe.target, probe.timeout
    if kind == "tcp":
        return check_tcp(target, timeout)
    if kind == "http":
        return check_http(target, timeout, probe.status, probe.body)
    if kind == "dns":
        return check_dns(target)
    if kind == "unix":
        return check_unix(target, timeout)
    if kind == "systemd":
        return check_systemd(target, timeout)
    if kind == "process":
        return check_process(root, target)
    raise ValueError("unknown probe kind %r" % kind)
