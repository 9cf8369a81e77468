"""Load generator: N established TCP connections on loopback, for the socket benchmarks.

A process may hold at most 20,000 open files here and root cannot raise the
limit, and each connection costs two descriptors (client and accepted server
side), so the connections are spread over child processes of at most
``PER_CHILD`` connections each. Child ``i`` listens on ``127.0.0.(i + 2)`` so
that no two children compete for the same 4-tuples, whatever the ephemeral
port range.

Everything stays on loopback and is bounded (``MAX_CONNECTIONS``). Children
exit when their stdin closes (the parent ended, even by a crash), and every
socket is closed with SO_LINGER 0 so that no TIME_WAIT sockets outlive the
load and disturb the next measurement.

Use from Python::

    with ConnLoad(10_000) as load:
        ...   # load.ports: the listening (address, port) of each child

or from a shell: ``python benchmarks/connload.py 10000`` (holds the
connections until Enter or Ctrl-C).
"""

import os
import select
import socket
import struct
import subprocess
import sys
import time

PER_CHILD = 9_000
MAX_CONNECTIONS = 200_000
READY_TIMEOUT_S = 120.0
# Connect this many before accepting them: below the listen backlog (somaxconn).
BATCH = 512

_LINGER_RESET = struct.pack("ii", 1, 0)


def _child(address, count):
    """Runs in a child: open ``count`` connections to our own listener, report
    ``ready PORT``, hold them until stdin closes, then reset them all."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, 0))
    listener.listen(BATCH * 2)
    port = listener.getsockname()[1]
    held = []
    made = 0
    while made < count:
        step = min(BATCH, count - made)
        clients = [socket.create_connection((address, port)) for _ in range(step)]
        servers = [listener.accept()[0] for _ in range(step)]
        held.extend(clients)
        held.extend(servers)
        made += step
    sys.stdout.write("ready %d\n" % port)
    sys.stdout.flush()
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        for sock in held:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            sock.close()
        listener.close()


class ConnLoad:
    """``count`` established loopback connections held by child processes."""

    def __init__(self, count, per_child=PER_CHILD):
        if not 0 < count <= MAX_CONNECTIONS:
            raise ValueError("count must be in 1..%d" % MAX_CONNECTIONS)
        if not 0 < per_child <= PER_CHILD:
            raise ValueError("per_child must be in 1..%d" % PER_CHILD)
        self.count = count
        self.per_child = per_child
        self.children = []
        self.ports = []

    def start(self):
        left = self.count
        index = 0
        try:
            while left > 0:
                step = min(self.per_child, left)
                address = "127.0.0.%d" % (index + 2)
                child = subprocess.Popen(
                    [sys.executable, os.path.abspath(__file__), "--child", address, str(step)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                )
                self.children.append(child)
                self.ports.append((address, None))
                left -= step
                index += 1
            deadline = time.monotonic() + READY_TIMEOUT_S
            for i, child in enumerate(self.children):
                line = self._ready_line(child, deadline)
                if not line.startswith(b"ready "):
                    raise RuntimeError("connload child %d failed: %r" % (child.pid, line))
                self.ports[i] = (self.ports[i][0], int(line.split()[1]))
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _ready_line(child, deadline):
        fd = child.stdout.fileno()
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise RuntimeError("connload child %d not ready in time" % child.pid)
        return child.stdout.readline()

    def stop(self):
        for child in self.children:
            if child.stdin and not child.stdin.closed:
                try:
                    child.stdin.close()
                except BrokenPipeError:
                    pass
        for child in self.children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            if child.stdout:
                child.stdout.close()
        self.children = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv):
    if len(argv) == 4 and argv[1] == "--child":
        _child(argv[2], int(argv[3]))
        return 0
    if len(argv) != 2:
        sys.stderr.write("usage: connload.py N   (N established loopback connections)\n")
        return 2
    with ConnLoad(int(argv[1])) as load:
        sys.stdout.write("%d connections held by pids %s; Enter ends\n"
                         % (load.count, " ".join(str(c.pid) for c in load.children)))
        sys.stdout.flush()
        try:
            sys.stdin.readline()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
