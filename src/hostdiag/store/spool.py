"""The agent's history on disk: append-only segment files of checksummed records.

A spool is one directory holding ``seg-<number:016x>.hds`` files. Segment numbers
only grow, so their order is the order of writing. Each segment starts with a
64-byte header and holds records; each record is written with ONE ``os.write``
of its header and payload, so a process killed with ``kill -9`` loses nothing
it has written, and at most the record being written is torn. Opening a spool
scans every segment, verifies every checksum, truncates a torn tail, skips (and
counts) a corrupt record in the middle, and rebuilds the in-memory index. The
byte layout, the durability bound and the recovery rules are in docs/spool.md.

The payload is opaque here: the caller compresses it and says so in ``flags``.
A record may name a *base*, an earlier record of the same segment it needs to
be decoded; a record whose base is lost is skipped like a corrupt one.

Writes never raise for I/O: a write that fails (ENOSPC, EDQUOT, EIO, ...) puts
the spool in a *degraded* state that :meth:`Spool.stats` reports; appends then
return False until a retry, at most every ``retry_interval_s``, succeeds in a
new segment.

Memory: the index costs 24 bytes per record (seq, wall time, offset, length).
"""

import errno
import fcntl
import os
import struct
import time
import uuid
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict, namedtuple

MiB = 1024 * 1024
DEFAULT_SEGMENT_BYTES = 8 * MiB
MIN_SEGMENT_BYTES = 4096
# Offsets in the index are 32-bit: a segment stays below 4 GiB even with one
# maximal record past this.
MAX_SEGMENT_BYTES = 1024 * MiB
DEFAULT_FSYNC_INTERVAL_S = 5.0
DEFAULT_RETRY_INTERVAL_S = 10.0

# A record payload above this is refused: it bounds what a scan or a read
# allocates for one record, whatever a damaged length field says.
MAX_PAYLOAD_BYTES = 64 * MiB

SEGMENT_MAGIC = b"HDSPOOL\x00"
SEGMENT_VERSION = 1
# magic, version, header length, reserved, agent id, writer's boot id,
# created (wall ns), reserved, crc32 of the 60 bytes before it.
SEGMENT_HEADER = struct.Struct("<8sHHI16s16sqII")
SEGMENT_SUFFIX = ".hds"
SEGMENT_PREFIX = "seg-"

RECORD_MAGIC = b"HDRC"
# magic, crc32 (of the header after it and the payload), payload length,
# flags, base delta, seq, wall ns, boot id. A base delta d > 0 says the record
# can only be decoded with record seq - d of the same boot, which is always
# earlier in the same segment.
RECORD_HEADER = struct.Struct("<4sIIHHQq16s")
MAX_BASE_DELTA = 0xFFFF
_CRC_START = 8  # the crc covers the record from this offset to the payload's end

FLAG_ZLIB = 0x1   # payload is zlib-compressed
FLAG_DELTA = 0x4  # payload is a delta document against its base record (store/history.py)

_ZERO_ID = bytes(16)
_READ_FD_CACHE = 8

SpoolRecord = namedtuple("SpoolRecord", "boot_id seq wall_ns flags payload base_seq")
SpoolRecord.__doc__ = """One record as stored: ``payload`` is the caller's bytes, as given to append;
``base_seq`` is the record it needs to be decoded, or None."""


class SpoolError(Exception):
    """The spool directory cannot be used at all (not a write failure: those degrade)."""


class SpoolLocked(SpoolError):
    """Another process holds the spool's lock."""


def canonical_id(value):
    """A UUID-like id (str, bytes or UUID) as the canonical lowercase hyphenated string."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return str(uuid.UUID(bytes=bytes(value)))
    try:
        return str(uuid.UUID(str(value).strip()))
    except ValueError:
        raise ValueError("not a UUID: %r" % (value,)) from None


def lookup_id(value):
    """A boot id to look up: canonical when it is a UUID; anything else is kept as
    given, so it matches no record (a client may send any string)."""
    try:
        return canonical_id(value)
    except ValueError:
        return str(value)


def _id_bytes(value):
    return _ZERO_ID if value is None else uuid.UUID(canonical_id(value)).bytes


def _id_str(raw):
    return None if raw == _ZERO_ID else str(uuid.UUID(bytes=raw))


def segment_name(number):
    return "%s%016x%s" % (SEGMENT_PREFIX, number, SEGMENT_SUFFIX)


def _segment_number(name):
    if not (name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX)):
        return None
    digits = name[len(SEGMENT_PREFIX):-len(SEGMENT_SUFFIX)]
    if len(digits) != 16:
        return None
    try:
        return int(digits, 16)
    except ValueError:
        return None


def encode_record(seq, wall_ns, boot_id_bytes, flags, payload, base_delta=0):
    """The exact bytes of one record: header then payload."""
    head = RECORD_HEADER.pack(RECORD_MAGIC, 0, len(payload), flags, base_delta, seq, wall_ns, boot_id_bytes)
    crc = zlib.crc32(payload, zlib.crc32(memoryview(head)[_CRC_START:]))
    return head[:4] + struct.pack("<I", crc) + head[_CRC_START:] + payload


def decode_record(buf, pos):
    """(SpoolRecord, end) for a valid record at ``buf[pos:]``, else None. No I/O."""
    end_head = pos + RECORD_HEADER.size
    if end_head > len(buf) or buf[pos:pos + 4] != RECORD_MAGIC:
        return None
    magic, crc, length, flags, base_delta, seq, wall_ns, boot = RECORD_HEADER.unpack_from(buf, pos)
    end = end_head + length
    if length > MAX_PAYLOAD_BYTES or end > len(buf):
        return None
    view = memoryview(buf)
    if zlib.crc32(view[end_head:end], zlib.crc32(view[pos + _CRC_START:end_head])) != crc:
        return None
    base_seq = seq - base_delta if base_delta else None
    return SpoolRecord(_id_str(boot), seq, wall_ns, flags, bytes(view[end_head:end]), base_seq), end


def encode_segment_header(agent_id_bytes, boot_id_bytes, created_wall_ns):
    head = SEGMENT_HEADER.pack(SEGMENT_MAGIC, SEGMENT_VERSION, SEGMENT_HEADER.size, 0,
                               agent_id_bytes, boot_id_bytes, created_wall_ns, 0, 0)
    return head[:-4] + struct.pack("<I", zlib.crc32(head[:-4]))


def decode_segment_header(buf):
    """(agent_id, boot_id, created_wall_ns) of a valid header, else None."""
    if len(buf) < SEGMENT_HEADER.size:
        return None
    magic, version, size, _r1, agent, boot, created, _r2, crc = SEGMENT_HEADER.unpack_from(buf, 0)
    if (magic != SEGMENT_MAGIC or version != SEGMENT_VERSION or size != SEGMENT_HEADER.size
            or zlib.crc32(buf[:SEGMENT_HEADER.size - 4]) != crc):
        return None
    return _id_str(agent), _id_str(boot), created


class _BootRun:
    """The records of one boot inside one segment, in the order written (seq increasing)."""

    __slots__ = ("seqs", "walls", "offsets", "lengths", "walls_sorted", "min_wall", "max_wall", "runs")

    def __init__(self):
        self.seqs = array("Q")
        self.walls = array("q")
        self.offsets = array("I")
        self.lengths = array("I")
        self.walls_sorted = True
        self.min_wall = None
        self.max_wall = None
        self.runs = []  # [start_seq, end_seq] of consecutive seqs

    def add(self, seq, wall_ns, offset, length):
        if self.walls and wall_ns < self.walls[-1]:
            self.walls_sorted = False
        if self.runs and self.runs[-1][1] + 1 == seq:
            self.runs[-1][1] = seq
        else:
            self.runs.append([seq, seq])
        self.seqs.append(seq)
        self.walls.append(wall_ns)
        self.offsets.append(offset)
        self.lengths.append(length)
        self.min_wall = wall_ns if self.min_wall is None else min(self.min_wall, wall_ns)
        self.max_wall = wall_ns if self.max_wall is None else max(self.max_wall, wall_ns)


class _Segment:
    __slots__ = ("number", "path", "size", "agent_id", "boot_id", "created_wall_ns", "boots", "records")

    def __init__(self, number, path):
        self.number = number
        self.path = path
        self.size = 0
        self.agent_id = None
        self.boot_id = None
        self.created_wall_ns = None
        self.boots = {}  # boot id -> _BootRun
        self.records = 0

    def holds(self, boot_id, seq):
        run = self.boots.get(boot_id)
        if run is None:
            return False
        i = bisect_left(run.seqs, seq)
        return i < len(run.seqs) and run.seqs[i] == seq

    def newest_wall(self):
        walls = [run.max_wall for run in self.boots.values() if run.max_wall is not None]
        return max(walls) if walls else self.created_wall_ns


def _errno_name(exc):
    return errno.errorcode.get(exc.errno, "E?") if exc.errno else type(exc).__name__


class Spool:
    """A bounded, append-only, crash-safe record log in one directory.

    ``max_bytes`` bounds the total size of the segment files, ``max_age_s`` the
    age of a segment's newest record measured against the wall time of the
    record being appended; both delete whole segments, oldest first, never the
    one being written. ``segment_bytes`` must be at most half of ``max_bytes``.

    ``boot_id`` is the writer's boot (default: a random id, i.e. a new boot),
    stored in every record; reads default to it. ``agent_id`` goes into each
    new segment's header (it may be set after opening). ``fsync_interval_s``:
    at most this many seconds of appends are not yet fsynced (None: never
    automatically, 0: every append). ``clock`` is a monotonic clock in seconds
    for the fsync and retry timers. ``readonly`` opens without the lock and
    never writes, truncates or deletes (for inspecting a live agent's spool).

    Not thread-safe: one owner (the :class:`History`) serialises the calls.
    """

    def __init__(self, directory, max_bytes, max_age_s, segment_bytes=DEFAULT_SEGMENT_BYTES, *,
                 boot_id=None, agent_id=None, fsync_interval_s=DEFAULT_FSYNC_INTERVAL_S,
                 retry_interval_s=DEFAULT_RETRY_INTERVAL_S, clock=time.monotonic, readonly=False):
        if not MIN_SEGMENT_BYTES <= segment_bytes <= MAX_SEGMENT_BYTES or segment_bytes * 2 > max_bytes:
            raise ValueError("segment_bytes (%d) must be between %d and %d and at most half of max_bytes (%d)"
                             % (segment_bytes, MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES, max_bytes))
        if max_age_s <= 0:
            raise ValueError("max_age_s must be > 0, got %r" % (max_age_s,))
        self.directory = os.fspath(directory)
        self.max_bytes = int(max_bytes)
        self.max_age_s = max_age_s
        self.segment_bytes = int(segment_bytes)
        self.boot_id = canonical_id(boot_id) if boot_id is not None else str(uuid.uuid4())
        self._boot_bytes = _id_bytes(self.boot_id)
        self.agent_id = canonical_id(agent_id) if agent_id is not None else None
        self.fsync_interval_s = fsync_interval_s
        self.retry_interval_s = retry_interval_s
        self.readonly = readonly
        self._clock = clock

        self._segments = []  # oldest first
        self._total_bytes = 0
        self._records = 0
        self._newest = {}  # boot id -> newest seq in the spool
        self._active = None  # the _Segment being written
        self._active_fd = None
        self._read_fds = OrderedDict()  # segment number -> fd
        self._next_number = 1
        self._bad_reads = set()  # (segment number, offset) found corrupt after the scan
        self._damaged = {}  # boot id -> [[start_seq, end_seq], ...] lost to damage, ascending
        self._scan_last = {}  # boot id -> newest seq met by the scan, indexed or not
        self._scan_damage = False  # the scan skipped damaged bytes and has not met a record since

        self._degraded = None
        self._retry_at = 0.0
        self._dir_dirty = False
        self._last_fsync = clock()
        self._corrupt_skipped = 0
        self._torn_truncated = 0
        self._write_errors = 0
        self._dropped = 0
        self._recoveries = 0
        self._deleted_segments = 0
        self._other_errors = 0
        self._orphans_skipped = 0
        self._last_error = None

        self._lock_fd = None
        if not readonly:
            self._acquire_lock()
        try:
            self._scan()
        except BaseException:
            self.close()
            raise

    # -- opening --------------------------------------------------------------

    def _acquire_lock(self):
        try:
            os.makedirs(self.directory, mode=0o750, exist_ok=True)
            fd = os.open(os.path.join(self.directory, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise SpoolError("spool %s: %s" % (self.directory, exc.strerror or exc)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise SpoolLocked("spool %s is in use by another process" % self.directory) from None
        self._lock_fd = fd

    def scan(self):
        """Rebuild the index from the files (done on open): a read-only spool sees
        what its writer added since. A writer's next record begins a new segment.
        The recovery counts in stats() are those of this scan."""
        if self._active is not None:
            self._close_active(sync=True)
        while self._read_fds:
            os.close(self._read_fds.popitem()[1])
        self._segments, self._total_bytes, self._records, self._newest = [], 0, 0, {}
        self._bad_reads = set()
        self._damaged, self._scan_last, self._scan_damage = {}, {}, False
        self._corrupt_skipped = self._orphans_skipped = self._torn_truncated = 0
        self._scan()

    def _scan(self):
        try:
            names = os.listdir(self.directory)
        except OSError as exc:
            raise SpoolError("spool %s: %s" % (self.directory, exc.strerror or exc)) from None
        numbered = sorted((n, name) for name in names for n in [_segment_number(name)] if n is not None)
        for number, name in numbered:
            self._next_number = number + 1
            segment = _Segment(number, os.path.join(self.directory, name))
            if self._scan_segment(segment):
                self._segments.append(segment)
                self._total_bytes += segment.size
        if not self.readonly and self._segments:
            newest = max((s.newest_wall() for s in self._segments if s.newest_wall() is not None),
                         default=None)
            if newest is not None:
                self._enforce_retention(newest, 0)

    def _scan_segment(self, segment):
        """Index one segment file; False when it is dropped (a torn creation)."""
        try:
            with open(segment.path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise SpoolError("spool %s: cannot read %s: %s"
                             % (self.directory, os.path.basename(segment.path), exc.strerror)) from None
        header = decode_segment_header(data)
        if header is None and len(data) < SEGMENT_HEADER.size:
            # Killed between creating the file and writing its header: nothing to keep.
            if not self.readonly:
                self._unlink(segment.path)
            self._torn_truncated += 1
            return False
        if header is None:
            self._corrupt_skipped += 1
        else:
            segment.agent_id, segment.boot_id, segment.created_wall_ns = header
        pos = SEGMENT_HEADER.size
        end = len(data)
        while pos < end:
            found = decode_record(data, pos)
            if found is None:
                resume = self._resync(data, pos + 1)
                if resume is None:
                    # A torn tail (killed or out of space mid-write) is cut, not
                    # counted as damage: the seq it held was never acknowledged.
                    self._truncate_tail(segment, pos, end)
                    end = pos
                    break
                self._corrupt_skipped += 1
                self._scan_damage = True
                pos = resume
                continue
            record, next_pos = found
            boot = record.boot_id
            if record.seq <= self._newest.get(boot, 0):
                self._corrupt_skipped += 1  # out of sequence: an index must stay ordered
                pos = next_pos
                continue
            if self._scan_damage:
                # The seqs between the last record met and this one were in the
                # damaged bytes; before the first record met, its base says where they began.
                last = self._scan_last.get(boot)
                start = last + 1 if last is not None else record.base_seq
                if start is not None and start < record.seq:
                    self.note_damage(boot, start, record.seq - 1)
                self._scan_damage = False
            if record.base_seq is not None and not segment.holds(boot, record.base_seq):
                self._orphans_skipped += 1  # its base was corrupt: it cannot be decoded
                self.note_damage(boot, record.seq, record.seq)
            else:
                self._index(segment, boot, record.seq, record.wall_ns, pos, next_pos - pos)
            self._scan_last[boot] = record.seq
            pos = next_pos
        segment.size = end
        return True

    @staticmethod
    def _resync(data, start):
        """The offset of the next valid record at or after ``start``, or None."""
        pos = data.find(RECORD_MAGIC, start)
        while pos != -1:
            if decode_record(data, pos) is not None:
                return pos
            pos = data.find(RECORD_MAGIC, pos + 1)
        return None

    def _truncate_tail(self, segment, pos, end):
        """Cut a torn or unreadable tail: nothing valid follows ``pos``."""
        self._torn_truncated += 1
        if self.readonly:
            return
        try:
            os.truncate(segment.path, pos)
        except OSError as exc:
            self._note_error("truncating the tail of %s" % os.path.basename(segment.path), exc)

    def _index(self, segment, boot_id, seq, wall_ns, offset, length):
        run = segment.boots.get(boot_id)
        if run is None:
            run = segment.boots[boot_id] = _BootRun()
        run.add(seq, wall_ns, offset, length)
        segment.records += 1
        self._records += 1
        self._newest[boot_id] = seq

    # -- writing --------------------------------------------------------------

    @property
    def degraded(self):
        """None when writing works, else a one-line message about the failure."""
        return self._degraded

    @property
    def next_append_starts_segment(self):
        """True when the next append would be the first record of a new segment,
        so it must be one without a base."""
        if self._active is not None and self._active.records:
            return False
        return self._degraded is None or self._clock() >= self._retry_at

    def append(self, seq, wall_ns, payload, flags=0, base_seq=None):
        """Write one record; True once it is in the kernel (survives kill -9).

        False, raising nothing, when the spool is degraded or the write failed.
        ``base_seq`` names the earlier record of this boot that this one needs
        to be decoded (None: it stands alone). A base must be in the segment
        being written, so such a record is never the first of a segment: while
        degraded, the spool waits for a record without a base to retry with.
        """
        if self.readonly:
            raise SpoolError("spool %s is open read-only" % self.directory)
        if self._lock_fd is None:
            raise SpoolError("spool %s is closed" % self.directory)
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ValueError("payload of %d bytes exceeds %d" % (len(payload), MAX_PAYLOAD_BYTES))
        if seq <= self._newest.get(self.boot_id, 0):
            raise ValueError("seq %d is not above the newest seq %d of boot %s"
                             % (seq, self._newest[self.boot_id], self.boot_id))
        base_delta = 0
        if base_seq is not None:
            base_delta = seq - base_seq
            if not 1 <= base_delta <= MAX_BASE_DELTA:
                raise ValueError("base_seq %d must be 1 to %d below seq %d" % (base_seq, MAX_BASE_DELTA, seq))
        if self._degraded is not None:
            if base_seq is not None or self._clock() < self._retry_at:
                self._dropped += 1
                return False
        elif base_seq is not None and (self._active is None or not self._active.holds(self.boot_id, base_seq)):
            raise ValueError("base record %d is not in the segment being written" % base_seq)
        record = encode_record(seq, wall_ns, self._boot_bytes, flags, payload, base_delta)
        incoming = len(record) + (SEGMENT_HEADER.size if self._active is None else 0)
        self._enforce_retention(wall_ns, incoming)
        try:
            if self._active is None:
                self._open_segment(wall_ns)
            written = os.write(self._active_fd, record)
            if written != len(record):
                raise OSError(errno.ENOSPC, "short write (%d of %d bytes)" % (written, len(record)))
            # O_APPEND wrote at the end of the file, wherever that is: the file says where.
            end = os.lseek(self._active_fd, 0, os.SEEK_CUR)
        except OSError as exc:
            self._fail("writing", exc)
            return False
        segment = self._active
        self._index(segment, self.boot_id, seq, wall_ns, end - len(record), len(record))
        self._total_bytes += end - segment.size
        segment.size = end
        if self._degraded is not None:
            self._degraded = None
            self._recoveries += 1
        if self.fsync_interval_s is not None and self._clock() - self._last_fsync >= self.fsync_interval_s:
            self.fsync()
        if self._active is not None and self._active.size >= self.segment_bytes:
            self._close_active(sync=True)
        return True

    def _open_segment(self, wall_ns):
        number = self._next_number
        path = os.path.join(self.directory, segment_name(number))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o640)
        except FileExistsError:
            self._next_number = number + 1  # not ours to overwrite: the retry takes the next number
            raise
        header = encode_segment_header(_id_bytes(self.agent_id), self._boot_bytes, wall_ns)
        try:
            written = os.write(fd, header)
            if written != len(header):
                raise OSError(errno.ENOSPC, "short write (%d of %d bytes)" % (written, len(header)))
        except OSError:
            os.close(fd)
            self._unlink(path)
            raise
        self._next_number = number + 1
        segment = _Segment(number, path)
        segment.size = len(header)
        segment.agent_id, segment.boot_id, segment.created_wall_ns = self.agent_id, self.boot_id, wall_ns
        self._segments.append(segment)
        self._total_bytes += len(header)
        self._active, self._active_fd = segment, fd
        self._dir_dirty = True

    def _fail(self, action, exc):
        """A write failed: cut what it left, stop writing, retry later."""
        segment = self._active
        where = os.path.basename(segment.path) if segment is not None else "a new segment"
        self._write_errors += 1
        self._degraded = "%s: %s %s in %s" % (_errno_name(exc), action, where, self.directory)
        if exc.strerror:
            self._degraded += " (%s)" % exc.strerror
        self._retry_at = self._clock() + self.retry_interval_s
        if segment is not None:
            try:
                os.ftruncate(self._active_fd, segment.size)
            except OSError as cut:
                # The segment is closed below and never written again; the next
                # scan truncates the torn tail this leaves.
                self._note_error("cutting a failed write from %s" % where, cut)
            self._close_active(sync=False)

    def _close_active(self, sync):
        fd, self._active, self._active_fd = self._active_fd, None, None
        try:
            if sync:
                os.fsync(fd)
                self._last_fsync = self._clock()
        except OSError as exc:
            self._fail_closed("fsync of a full segment", exc)
        finally:
            os.close(fd)

    def _fail_closed(self, action, exc):
        self._write_errors += 1
        self._degraded = "%s: %s in %s (%s)" % (_errno_name(exc), action, self.directory, exc.strerror or exc)
        self._retry_at = self._clock() + self.retry_interval_s

    def flush(self):
        """Nothing to do: each append is one os.write, in the kernel when append returns.
        Kept so callers can flush a spool the same way as a buffered writer."""

    def fsync(self):
        """Force written records to stable storage; False (and degraded) on failure."""
        if self.readonly:
            return True
        self._last_fsync = self._clock()
        try:
            if self._active_fd is not None:
                os.fsync(self._active_fd)
            if self._dir_dirty:
                dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
                self._dir_dirty = False
        except OSError as exc:
            if self._active is not None:
                self._fail("fsync of", exc)
            else:
                self._fail_closed("fsync", exc)
            return False
        return True

    # -- retention ------------------------------------------------------------

    def _enforce_retention(self, now_wall_ns, incoming):
        max_age_ns = int(self.max_age_s * 1e9)
        while self._segments and self._segments[0] is not self._active:
            oldest = self._segments[0]
            newest_wall = oldest.newest_wall()
            too_big = self._total_bytes + incoming > self.max_bytes
            too_old = newest_wall is not None and now_wall_ns - newest_wall > max_age_ns
            if not (too_big or too_old):
                return
            self._delete_oldest()

    def _delete_oldest(self):
        segment = self._segments.pop(0)
        self._total_bytes -= segment.size
        self._records -= segment.records
        fd = self._read_fds.pop(segment.number, None)
        if fd is not None:
            os.close(fd)
        self._unlink(segment.path)
        self._deleted_segments += 1
        self._dir_dirty = True

    def _unlink(self, path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass  # already gone: the goal of the unlink
        except OSError as exc:
            self._note_error("deleting %s" % os.path.basename(path), exc)

    def _note_error(self, action, exc):
        """An error that does not stop writing (a failed delete, truncate or read)."""
        self._other_errors += 1
        self._last_error = "%s: %s (%s)" % (_errno_name(exc), action, exc.strerror or exc)

    # -- reading --------------------------------------------------------------

    def _read_fd(self, segment):
        fd = self._read_fds.get(segment.number)
        if fd is not None:
            self._read_fds.move_to_end(segment.number)
            return fd
        fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
        self._read_fds[segment.number] = fd
        while len(self._read_fds) > _READ_FD_CACHE:
            os.close(self._read_fds.popitem(last=False)[1])
        return fd

    def _read_at(self, segment, offset, length, boot_id, seq):
        """Record ``seq`` at ``offset``, verified again (a disk can rot after the scan); None if bad."""
        key = (segment.number, offset)
        if key in self._bad_reads:
            return None
        try:
            data = os.pread(self._read_fd(segment), length, offset)
        except OSError as exc:
            self._note_error("reading %s" % os.path.basename(segment.path), exc)
            return None
        found = decode_record(data, 0)
        if found is None or found[1] != length:
            self._bad_reads.add(key)
            self._corrupt_skipped += 1
            self.note_damage(boot_id, seq, seq)
            return None
        return found[0]

    def note_damage(self, boot_id, start_seq, end_seq):
        """Remember that records start_seq..end_seq of a boot were lost to damage."""
        runs = self._damaged.setdefault(boot_id, [])
        runs.append([start_seq, end_seq])
        runs.sort()
        merged = [runs[0]]
        for start, end in runs[1:]:
            if start <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self._damaged[boot_id] = merged

    def damaged(self, boot_id=None):
        """[(start_seq, end_seq)] of one boot's records known lost to damage
        (a failed check, or a delta chain broken by one), ascending."""
        boot = self.boot_id if boot_id is None else lookup_id(boot_id)
        return [tuple(run) for run in self._damaged.get(boot, ())]

    def _boot_runs(self, boot_id):
        for segment in self._segments:
            run = segment.boots.get(boot_id)
            if run is not None and run.seqs:
                yield segment, run

    def get(self, seq, boot_id=None):
        """The record ``seq`` of ``boot_id`` (default: this spool's boot), or None."""
        boot = self.boot_id if boot_id is None else lookup_id(boot_id)
        for segment, run in self._boot_runs(boot):
            if run.seqs[0] <= seq <= run.seqs[-1]:
                i = bisect_left(run.seqs, seq)
                if i < len(run.seqs) and run.seqs[i] == seq:
                    return self._read_at(segment, run.offsets[i], run.lengths[i], boot, seq)
                return None
        return None

    def read(self, seq, boot_id=None):
        """(wall_ns, payload) of record ``seq``, or None when absent or corrupt."""
        record = self.get(seq, boot_id)
        return None if record is None else (record.wall_ns, record.payload)

    def iter_range(self, start_seq=None, end_seq=None, *, boot_id=None, start_ns=None, end_ns=None):
        """SpoolRecords of one boot with start_seq <= seq <= end_seq and
        start_ns <= wall_ns <= end_ns (None: unbounded), seq ascending.
        Records are read lazily; corrupt ones are skipped."""
        boot = self.boot_id if boot_id is None else lookup_id(boot_id)
        for segment, run in list(self._boot_runs(boot)):
            if start_seq is not None and run.seqs[-1] < start_seq:
                continue
            if end_seq is not None and run.seqs[0] > end_seq:
                break
            if (start_ns is not None and run.max_wall < start_ns) or (end_ns is not None and run.min_wall > end_ns):
                continue
            lo = 0 if start_seq is None else bisect_left(run.seqs, start_seq)
            hi = len(run.seqs) if end_seq is None else bisect_right(run.seqs, end_seq)
            if run.walls_sorted:
                if start_ns is not None:
                    lo = max(lo, bisect_left(run.walls, start_ns))
                if end_ns is not None:
                    hi = min(hi, bisect_right(run.walls, end_ns))
            for i in range(lo, hi):
                wall = run.walls[i]
                if (start_ns is not None and wall < start_ns) or (end_ns is not None and wall > end_ns):
                    continue
                record = self._read_at(segment, run.offsets[i], run.lengths[i], boot, run.seqs[i])
                if record is not None:
                    yield record

    def newest_seq(self, boot_id=None):
        """The newest seq of ``boot_id`` (default: this spool's boot) on disk, or None."""
        boot = self.boot_id if boot_id is None else lookup_id(boot_id)
        return self._newest.get(boot)

    def boots(self):
        """{boot_id: {"oldest_seq", "newest_seq", "oldest_wall_ns", "newest_wall_ns", "records"}}."""
        out = {}
        for segment in self._segments:
            for boot, run in segment.boots.items():
                if not run.seqs:
                    continue
                entry = out.get(boot)
                if entry is None:
                    out[boot] = {"oldest_seq": run.seqs[0], "newest_seq": run.seqs[-1],
                                 "oldest_wall_ns": run.walls[0], "newest_wall_ns": run.walls[-1],
                                 "records": len(run.seqs)}
                else:
                    entry["newest_seq"] = run.seqs[-1]
                    entry["newest_wall_ns"] = run.walls[-1]
                    entry["records"] += len(run.seqs)
        return out

    def seq_runs(self, boot_id=None):
        """[(start_seq, end_seq)] of consecutive seqs present for one boot, ascending."""
        boot = self.boot_id if boot_id is None else lookup_id(boot_id)
        runs = []
        for _segment, run in self._boot_runs(boot):
            for start, end in run.runs:
                if runs and runs[-1][1] + 1 == start:
                    runs[-1] = (runs[-1][0], end)
                else:
                    runs.append((start, end))
        return runs

    def segment_agent_ids(self):
        """Agent ids found in segment headers, newest segment first (to recover a lost id)."""
        return [s.agent_id for s in reversed(self._segments) if s.agent_id is not None]

    def stats(self):
        oldest = newest = None
        if self._segments:
            mine = [(s, r) for s, r in self._boot_runs(self.boot_id)]
            if mine:
                oldest, newest = mine[0][1].seqs[0], mine[-1][1].seqs[-1]
        return {
            "bytes": self._total_bytes,
            "segments": len(self._segments),
            "records": self._records,
            "oldest_seq": oldest,
            "newest_seq": newest,
            "degraded": self._degraded,
            "corrupt_skipped": self._corrupt_skipped,
            "orphans_skipped": self._orphans_skipped,
            "torn_truncated": self._torn_truncated,
            "write_errors": self._write_errors,
            "dropped_while_degraded": self._dropped,
            "recoveries": self._recoveries,
            "deleted_segments": self._deleted_segments,
            "other_errors": self._other_errors,
            "last_error": self._last_error,
            "max_bytes": self.max_bytes,
            "max_age_s": self.max_age_s,
            "retry_interval_s": self.retry_interval_s,
        }

    def close(self):
        """fsync, then release every file descriptor and the lock. Idempotent."""
        if self._active_fd is not None:
            self._close_active(sync=True)
        if self._dir_dirty and not self.readonly:
            self.fsync()
        while self._read_fds:
            os.close(self._read_fds.popitem()[1])
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
