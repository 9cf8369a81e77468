"""A real ClickHouse server on loopback for the fleet-store tests.

Debian's clickhouse-server (18.16) runs from a config written into a temporary
directory: data, tmp and logs there, HTTP and native TCP ports on 127.0.0.1
picked free by the kernel, one user "default" without password allowed from
127.0.0.1 only. :func:`server_or_skip` skips a test, saying why, where the
binary is not installed (``apt-get install -y clickhouse-server clickhouse-client``).
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

SERVER_BINARY = "/usr/sbin/clickhouse-server"
START_DEADLINE_S = 60.0

_CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{dir}/server.log</log><errorlog>{dir}/error.log</errorlog>
        <console>0</console></logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <path>{dir}/data/</path>
    <tmp_path>{dir}/tmp/</tmp_path>
    <users_config>{dir}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>67108864</mark_cache_size>
</yandex>
"""

_USERS = """<?xml version="1.0"?>
<yandex>
    <profiles><default></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
        <profile>default</profile><quota>default</quota></default></users>
    <quotas><default></default></quotas>
</yandex>
"""


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ClickHouseServer:
    """One clickhouse-server process in a directory of its own; ``url(db)`` names a store in it."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="hd-clickhouse-", dir="/tmp")
        self.http_port = _free_port()
        self.tcp_port = _free_port()
        self.proc = None
        self.log = None

    def start(self):
        config = os.path.join(self.dir, "config.xml")
        with open(config, "w") as f:
            f.write(_CONFIG.format(dir=self.dir, http_port=self.http_port, tcp_port=self.tcp_port))
        with open(os.path.join(self.dir, "users.xml"), "w") as f:
            f.write(_USERS)
        self.log = open(os.path.join(self.dir, "stdout.log"), "ab")
        self.proc = subprocess.Popen([SERVER_BINARY, "--config-file=" + config], stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=self.dir, start_new_session=True)
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("clickhouse-server exited with %s: %s" % (self.proc.returncode, self.log_tail()))
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/ping" % self.http_port, timeout=2) as reply:
                    if reply.read() == b"Ok.\n":
                        return self
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("clickhouse-server did not answer /ping in %d s: %s"
                                     % (START_DEADLINE_S, self.log_tail()))
            time.sleep(0.1)

    def url(self, database):
        return "clickhouse://127.0.0.1:%d/%s" % (self.http_port, database)

    def log_tail(self):
        out = []
        for name in ("stdout.log", "error.log"):
            try:
                with open(os.path.join(self.dir, name), "rb") as f:
                    out.append(f.read()[-2000:].decode("utf-8", "replace"))
            except OSError:
                pass
        return "\n".join(out)

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
            self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None
        shutil.rmtree(self.dir, ignore_errors=True)


def server_or_skip():
    """A started server (the caller stops it), or pytest.skip naming the missing package."""
    if not os.access(SERVER_BINARY, os.X_OK):
        pytest.skip("%s not installed (apt-get install -y clickhouse-server clickhouse-client)" % SERVER_BINARY)
    server = ClickHouseServer()
    try:
        return server.start()
    except BaseException:
        server.stop()
        raise
