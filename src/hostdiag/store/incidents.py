"""Incident bundles: the evidence of each incident, frozen apart from the ring and the spool.

A bundle is one file, ``<directory>/<id>.incident`` (the directory is
``<spool.dir>/incidents`` in the agent), in the format of
:func:`encode_bundle`:

    magic    b"HDINC1\\n"                        7 bytes
    header   uint32 BE length, msgpack map, uint32 BE CRC-32 of the map's bytes
    body     uint32 BE length, msgpack map, uint32 BE CRC-32 of the map's bytes

The header is the incident's summary (id, times, title, severity, state:
what a listing needs, read without the body). The body holds ``records``
([boot_id, seq, wall_ns, zlib-compressed snapshot msgpack] each, oldest
first), ``findings`` (the timeline: one entry per sample, its findings) and
``slo`` (the newest SLO section seen). The same bytes travel over the
protocol and are kept by the collector, so that one decoder reads all three.

Writes are atomic (a temporary file, fsync, rename, fsync of the directory):
a reader sees the old bundle or the new one. The store is bounded by
``max_count`` bundles and ``max_bytes`` of bundle files: after a save, the
oldest bundles (by start) other than the one just saved are deleted until
both hold. A bundle that cannot be read back (damaged, truncated, not ours)
is skipped, and named once in :attr:`IncidentStore.problems`.

Without a directory the store keeps the bundles' bytes in memory, with the
same bounds. Units: bytes, nanoseconds since the epoch.
"""

import os
import struct
import threading
import zlib

from hostdiag.encode.wire import MAX_DOCUMENT_BYTES, decode_msgpack, encode_msgpack

MAGIC = b"HDINC1\n"
SUFFIX = ".incident"
_LENGTH = struct.Struct(">I")
# Bundles bigger than this are refused when read: the largest document msgpack decodes here
# (incidents.bundle_max_bytes is at most this).
MAX_BUNDLE_BYTES = MAX_DOCUMENT_BYTES


class BundleError(ValueError):
    """A bundle that cannot be read: the message names what is wrong, in one line."""


def _part(data):
    return _LENGTH.pack(len(data)) + data + _LENGTH.pack(zlib.crc32(data))


def encode_bundle(summary, body):
    """The bytes of a bundle: ``summary`` and ``body`` are maps of plain data."""
    return MAGIC + _part(encode_msgpack(summary)) + _part(encode_msgpack(body))


def _read_part(data, offset, what):
    if offset + _LENGTH.size > len(data):
        raise BundleError("truncated before its %s" % what)
    (length,) = _LENGTH.unpack_from(data, offset)
    start, end = offset + _LENGTH.size, offset + _LENGTH.size + length
    if end + _LENGTH.size > len(data):
        raise BundleError("truncated in its %s (%d bytes announced)" % (what, length))
    raw = data[start:end]
    (crc,) = _LENGTH.unpack_from(data, end)
    if zlib.crc32(raw) != crc:
        raise BundleError("its %s fails its CRC check" % what)
    try:
        value = decode_msgpack(raw)
    except ValueError as exc:
        raise BundleError("its %s is not msgpack: %s" % (what, exc)) from None
    if not isinstance(value, dict):
        raise BundleError("its %s is not a map" % what)
    return value, end + _LENGTH.size


def decode_summary(data):
    """The summary of a bundle's bytes (the header only); BundleError when damaged."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError("%d bytes, over the %d byte limit" % (len(data), MAX_BUNDLE_BYTES))
    if not data.startswith(MAGIC):
        raise BundleError("not an incident bundle (bad magic)")
    summary, _ = _read_part(data, len(MAGIC), "header")
    if not isinstance(summary.get("id"), str):
        raise BundleError("its header has no id")
    return summary


def decode_bundle(data):
    """(summary, body) of a bundle's bytes; BundleError when damaged."""
    summary = decode_summary(data)
    _, offset = _read_part(data, len(MAGIC), "header")
    body, _ = _read_part(data, offset, "body")
    return summary, body


def compress_record(boot_id, seq, wall_ns, payload):
    """One record as a bundle's body keeps it."""
    return [boot_id, seq, wall_ns, zlib.compress(payload, 6)]


def record_payload(entry):
    """The snapshot msgpack bytes of a body's record entry; BundleError when damaged."""
    try:
        return zlib.decompress(entry[3])
    except (zlib.error, TypeError, IndexError) as exc:
        raise BundleError("a record in it cannot be inflated: %s" % exc) from None


class IncidentStore:
    """The bundles of one agent, bounded by ``max_count`` and ``max_bytes``."""

    def __init__(self, directory, max_count, max_bytes):
        self.directory = os.fspath(directory) if directory is not None else None
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.problems = []
        self.evicted = 0
        self._index = {}   # id -> (summary, size in bytes)
        self._memory = {}  # id -> bytes, without a directory
        # The sampler saves while the server's thread lists and reads.
        self._lock = threading.Lock()
        if self.directory is None:
            return
        os.makedirs(self.directory, mode=0o750, exist_ok=True)
        for name in sorted(os.listdir(self.directory)):
            path = os.path.join(self.directory, name)
            if name.endswith(SUFFIX + ".tmp"):
                try:
                    os.unlink(path)  # a write the agent did not finish
                except OSError as exc:
                    self.problems.append("cannot remove %s: %s" % (path, exc.strerror or exc))
                continue
            if not name.endswith(SUFFIX):
                continue
            try:
                with open(path, "rb") as f:
                    data = f.read(MAX_BUNDLE_BYTES + 1)
                summary = decode_summary(data)
                decode_bundle(data)
            except (OSError, BundleError) as exc:
                reason = getattr(exc, "strerror", None) or exc
                self.problems.append("incident bundle %s skipped: %s" % (path, reason))
                continue
            self._index[summary["id"]] = (summary, len(data))

    def _path(self, incident_id):
        return os.path.join(self.directory, incident_id + SUFFIX)

    def save(self, summary, body):
        """Write (or replace) the bundle of ``summary["id"]``; its size in bytes.
        Older bundles are evicted past the bounds. OSError when it cannot be
        written (the bundle on disk, if any, stays as it was)."""
        data = encode_bundle(summary, body)
        incident_id = summary["id"]
        with self._lock:
            return self._save(incident_id, summary, data)

    def _save(self, incident_id, summary, data):
        if self.directory is None:
            self._memory[incident_id] = data
        else:
            path = self._path(incident_id)
            tmp = path + ".tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
            try:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, path)
            except OSError:
                try:
                    os.unlink(tmp)  # a full disk: leave no partial file taking its room
                except FileNotFoundError:
                    pass
                raise
            dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._index[incident_id] = (summary, len(data))
        self._evict(keep=incident_id)
        return len(data)

    def _evict(self, keep):
        order = sorted(self._index, key=lambda i: (self._index[i][0].get("start_ns") or 0, i))
        total = sum(size for _, size in self._index.values())
        for incident_id in order:
            if len(self._index) <= self.max_count and total <= self.max_bytes:
                return
            if incident_id == keep:
                continue
            total -= self._index.pop(incident_id)[1]
            self.evicted += 1
            if self.directory is None:
                self._memory.pop(incident_id, None)
            else:
                try:
                    os.unlink(self._path(incident_id))
                except FileNotFoundError:
                    pass

    def list(self):
        """The summaries, newest start first."""
        with self._lock:
            summaries = [summary for summary, _ in self._index.values()]
        return sorted(summaries, key=lambda s: (s.get("start_ns") or 0, s["id"]), reverse=True)

    def read(self, incident_id):
        """The bytes of a bundle, or None when there is no such incident (or it
        was damaged since: then it is dropped and named in :attr:`problems`)."""
        with self._lock:
            return self._read(incident_id)

    def load(self, incident_id):
        """(summary, body) of a bundle, or None as :meth:`read`."""
        data = self.read(incident_id)
        return None if data is None else decode_bundle(data)

    def _read(self, incident_id):
        if incident_id not in self._index:
            return None
        if self.directory is None:
            return self._memory[incident_id]
        try:
            with open(self._path(incident_id), "rb") as f:
                data = f.read(MAX_BUNDLE_BYTES + 1)
            decode_bundle(data)
        except (OSError, BundleError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            self.problems.append("incident bundle %s skipped: %s" % (incident_id, reason))
            self._index.pop(incident_id, None)
            return None
        return data

    def stats(self):
        """Bundles kept, their bytes, how many were evicted, and the bounds."""
        with self._lock:
            return {"count": len(self._index), "bytes": sum(size for _, size in self._index.values()),
                    "evicted": self.evicted, "max_count": self.max_count, "max_bytes": self.max_bytes}
