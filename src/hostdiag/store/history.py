"""The agent's history: a memory ring in front of an on-disk spool, with identity.

A record is keyed by (agent_id, boot_id, seq). ``agent_id`` is a random id made
once and kept in ``<spool_dir>/agent_id`` (a fresh one per process without a
spool). ``seq`` counts from 1 for each boot and, after an agent restart on the
same boot, continues after the newest seq that boot ever had. Records of
earlier boots stay readable under their own boot id.

Encoding (payloads are the caller's msgpack bytes, normally a snapshot map):
every ``keyframe_every`` records, and as the first record of each spool
segment, a *keyframe* is stored whole, zlib-compressed. Each record between
is stored as a *delta frame*: the change from the record before it
(encode/delta.py: counters as differences, keys by position, table rows by
identity; a process or socket table, null between the samples that take it,
as a change from the newest table before it), zlib-compressed. A delta frame
therefore needs every record back to its keyframe, and names the one before
it as its base. Since the whole chain is in one segment, deleting whole
segments never strands a record; a damaged record takes the rest of its chain
with it (at most ``keyframe_every - 1`` records), skipped and counted.

Reads give back the very bytes appended: before a delta frame is stored, it
is applied to its base and the result encoded again; where only the order of
some map's keys differs, the frame carries the order to restore, and a record
the delta cannot rebuild exactly (a payload our encoder would not write) is
stored as a keyframe instead. Rebuilding one record costs at most one
keyframe and ``keyframe_every - 1`` delta frames; reads keep the last record
rebuilt, so reading forwards costs one delta frame per record.

The ring holds the same compressed bytes as the spool (one compression per
record) and never a record without its chain: it evicts from a keyframe to
the next, and only once the newer records number ``max_records``, so it
always holds the newest ``max_records`` (and at most ``keyframe_every - 1``
more), within ``max_bytes``. A ring smaller than ``keyframe_every`` makes
the keyframes that frequent, so that it never holds more than twice its size. The history keeps the newest record decoded (the
base of the next delta) and the last one rebuilt by a read.

When the spool cannot write (a full disk), the ring keeps everything and the
newest seq is noted in ``<spool_dir>/seqmark``, a file allocated at start and
overwritten in place, so that a restart on the same boot does not reuse a seq
that a client may already have seen; those records show as a gap.

All methods are thread-safe; a call holds the lock for at most one page of
reads: its first record rebuilt (at worst from its keyframe), then one delta
frame per record.
"""

import os
import struct
import threading
import time
import uuid
import zlib
from collections import namedtuple

from hostdiag.encode.delta import apply, delta, document_of, key_order_fixes, next_prior, with_key_order
from hostdiag.encode.wire import decode_msgpack, encode_msgpack
from hostdiag.store.ring import Ring
from hostdiag.store.spool import (
    DEFAULT_FSYNC_INTERVAL_S, DEFAULT_RETRY_INTERVAL_S, DEFAULT_SEGMENT_BYTES, FLAG_DELTA, FLAG_ZLIB,
    MAX_PAYLOAD_BYTES, MiB, Spool, canonical_id, lookup_id,
)

Record = namedtuple("Record", "boot_id seq wall_ns payload")
Record.__doc__ = """One history record; ``payload`` is the uncompressed msgpack bytes given to append."""

StoredChange = namedtuple("StoredChange", "seq base_seq base change prior")
StoredChange.__doc__ = """How the newest record was stored: ``change`` (encode/delta.py) turns
``base`` (the document of record ``base_seq``) into record ``seq``'s, taking
each key of ``prior_keys(change)`` from ``prior[key]``. Read-only: shared
with the history."""

_State = namedtuple("_State", "boot_id seq doc prior")
_State.__doc__ = """A record decoded, as a base for the delta frame after it: ``doc`` is its
document (None when its payload is not a msgpack map: then it is a base for
nothing), ``prior`` the newest non-null value of each top-level key in its
chain (what a delta's ``"p"`` member refers to)."""

DEFAULT_RING_MAX_RECORDS = 3600
DEFAULT_RING_MAX_BYTES = 64 * MiB
DEFAULT_SPOOL_MAX_BYTES = 256 * MiB
DEFAULT_SPOOL_MAX_AGE_S = 7 * 86400
DEFAULT_KEYFRAME_EVERY = 60
DEFAULT_COMPRESS_LEVEL = 6

# What building or applying a delta raises on a document it cannot handle
# (mixed key types, nesting deeper than the interpreter allows).
_DELTA_ERRORS = (ValueError, TypeError, KeyError, IndexError, RecursionError)

AGENT_ID_FILE = "agent_id"
SEQMARK_FILE = "seqmark"
# magic, crc32 of what follows, seq, boot id
_SEQMARK = struct.Struct("<4sIQ16s")
_SEQMARK_MAGIC = b"HDSQ"


class History:
    """Ring + spool + identity. Without ``spool_dir`` the history is the ring alone.

    ``boot_id`` is the host's boot id (a UUID string; None: a random one, so
    each process counts as a new boot). ``clock`` is a monotonic clock in
    seconds for the spool's fsync and retry timers.
    """

    def __init__(self, spool_dir=None, *, boot_id=None,
                 ring_max_records=DEFAULT_RING_MAX_RECORDS, ring_max_bytes=DEFAULT_RING_MAX_BYTES,
                 spool_max_bytes=DEFAULT_SPOOL_MAX_BYTES, spool_max_age_s=DEFAULT_SPOOL_MAX_AGE_S,
                 spool_segment_bytes=DEFAULT_SEGMENT_BYTES, spool_fsync_interval_s=DEFAULT_FSYNC_INTERVAL_S,
                 spool_retry_interval_s=DEFAULT_RETRY_INTERVAL_S, clock=time.monotonic,
                 keyframe_every=DEFAULT_KEYFRAME_EVERY, compress_level=DEFAULT_COMPRESS_LEVEL):
        if keyframe_every < 1:
            raise ValueError("keyframe_every must be >= 1, got %r" % (keyframe_every,))
        self.boot_id = canonical_id(boot_id) if boot_id is not None else str(uuid.uuid4())
        # A chain no longer than the ring: the ring holds the newest
        # ring_max_records and at most one chain less one record more.
        self.keyframe_every = min(keyframe_every, ring_max_records)
        self.compress_level = compress_level
        self._lock = threading.RLock()
        self._ring = Ring(ring_max_records, ring_max_bytes)
        self._tip = None  # _State of the newest record appended: the next delta's base
        self._tip_record = None  # ...and that Record, so the newest is served without rebuilding
        self._tip_change = None  # ...and its StoredChange, for subscribers' delta frames
        self._cursor = None  # _State of the last record a read rebuilt
        self._since_keyframe = 0
        self._encoded = {"keyframes": 0, "deltas": 0, "reordered": 0, "exact_fallbacks": 0}
        self._decode_errors = 0
        self._problems = []
        self._seqmark_fd = None
        self._marked_seq = None
        self.spool_dir = os.fspath(spool_dir) if spool_dir is not None else None
        self._spool = None
        next_seq = 1
        if self.spool_dir is not None:
            self._spool = Spool(self.spool_dir, spool_max_bytes, spool_max_age_s, spool_segment_bytes,
                                boot_id=self.boot_id, fsync_interval_s=spool_fsync_interval_s,
                                retry_interval_s=spool_retry_interval_s, clock=clock)
            try:
                self.agent_id = self._load_agent_id()
                self._spool.agent_id = canonical_id(self.agent_id)
                self._open_seqmark()
            except BaseException:
                self._spool.close()
                raise
            newest = self._spool.newest_seq(self.boot_id) or 0
            next_seq = max(newest, self._marked_seq or 0) + 1
        else:
            self.agent_id = uuid.uuid4().hex
        self._next_seq = next_seq
        self._retention = {
            "ring_records": self._ring.max_records,
            "ring_bytes": self._ring.max_bytes,
            "spool_bytes": spool_max_bytes if self._spool is not None else None,
            "spool_age_s": spool_max_age_s if self._spool is not None else None,
        }

    @classmethod
    def from_config(cls, config, boot_id=None, clock=time.monotonic):
        """A History with the ring.* and spool.* settings of a :class:`hostdiag.apps.config.Config`."""
        return cls(
            config.spool.dir if config.spool.enabled else None,
            boot_id=boot_id,
            ring_max_records=config.ring.max_records,
            ring_max_bytes=config.ring.max_bytes,
            spool_max_bytes=config.spool.max_bytes,
            spool_max_age_s=config.spool.max_age,
            spool_segment_bytes=config.spool.segment_bytes,
            spool_fsync_interval_s=config.spool.fsync_interval,
            spool_retry_interval_s=config.spool.retry_interval,
            clock=clock,
        )

    # -- identity -------------------------------------------------------------

    def _load_agent_id(self):
        path = os.path.join(self.spool_dir, AGENT_ID_FILE)
        try:
            with open(path, "rb") as f:
                text = f.read(256).decode("ascii", "replace").strip()
            return uuid.UUID(hex=text).hex
        except FileNotFoundError:
            problem = None
        except (OSError, ValueError) as exc:
            problem = "%s is unreadable (%s)" % (path, getattr(exc, "strerror", None) or exc)
        # Lost or damaged: the segments remember whose they are.
        recovered = self._spool.segment_agent_ids()
        agent_id = uuid.UUID(recovered[0]).hex if recovered else uuid.uuid4().hex
        if problem is not None:
            self._problems.append(problem + "; agent_id %s %s" % (
                agent_id, "recovered from the segments" if recovered else "made anew"))
        self._write_agent_id(path, agent_id)
        return agent_id

    def _write_agent_id(self, path, agent_id):
        tmp = path + ".tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, (agent_id + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            dir_fd = os.open(self.spool_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            self._problems.append("agent_id %s not persisted to %s: %s"
                                  % (agent_id, path, exc.strerror or exc))

    def _open_seqmark(self):
        """Read the seq noted while the spool could not write, and keep the file
        open to overwrite in place (no new blocks needed on a full disk)."""
        path = os.path.join(self.spool_dir, SEQMARK_FILE)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            self._problems.append("seqmark %s unavailable: %s" % (path, exc.strerror or exc))
            return
        try:
            data = os.pread(fd, _SEQMARK.size, 0)
            if len(data) < _SEQMARK.size:
                os.pwrite(fd, bytes(_SEQMARK.size), 0)
                os.fsync(fd)
            else:
                magic, crc, seq, boot = _SEQMARK.unpack(data)
                valid = magic == _SEQMARK_MAGIC and zlib.crc32(data[8:]) == crc
                if valid and str(uuid.UUID(bytes=boot)) == self.boot_id:
                    self._marked_seq = seq
        except OSError as exc:
            os.close(fd)
            self._problems.append("seqmark %s unavailable: %s" % (path, exc.strerror or exc))
            return
        self._seqmark_fd = fd

    def _mark_seq(self, seq):
        if self._seqmark_fd is None:
            return
        body = struct.pack("<Q16s", seq, uuid.UUID(self.boot_id).bytes)
        try:
            os.pwrite(self._seqmark_fd, _SEQMARK_MAGIC + struct.pack("<I", zlib.crc32(body)) + body, 0)
            self._marked_seq = seq
        except OSError as exc:
            self._problems.append("seqmark not updated: %s" % (exc.strerror or exc))
            os.close(self._seqmark_fd)
            self._seqmark_fd = None

    # -- writing --------------------------------------------------------------

    def append(self, wall_ns, payload, doc=None):
        """Keep one record (``payload``: msgpack bytes of a snapshot); returns its seq.

        ``doc`` is the map ``payload`` was encoded from, when the caller has
        it: the history then keeps it as the next delta's base instead of
        decoding ``payload`` again (11 ms for a sample with tables). It must
        hold only what msgpack decodes to (dict, list, str, bytes, int,
        float, bool, None), and neither the caller nor anyone sharing its
        containers may change it afterwards. Each delta frame is still
        checked against ``payload`` byte for byte before it is stored.

        Never raises for I/O: when the spool cannot write, the ring still has
        the record and :meth:`info` says why in ``spool.degraded``.
        """
        payload = bytes(payload)
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ValueError("payload of %d bytes exceeds %d" % (len(payload), MAX_PAYLOAD_BYTES))
        if type(doc) is not dict:
            doc = document_of(payload)
        with self._lock:
            seq = self._next_seq
            spool = self._spool
            tip = self._tip
            stored = change = None
            if (tip is not None and tip.doc is not None and doc is not None
                    and self._since_keyframe < self.keyframe_every
                    and not (spool is not None and spool.next_append_starts_segment)):
                stored, change = self._delta_frame(tip, doc, payload)
            if stored is None:
                stored, flags, base = zlib.compress(payload, self.compress_level), FLAG_ZLIB, None
                prior = next_prior({}, doc)
                self._since_keyframe = 0
                self._encoded["keyframes"] += 1
            else:
                flags, base = FLAG_ZLIB | FLAG_DELTA, tip.seq
                prior = next_prior(tip.prior, doc)
                self._encoded["deltas"] += 1
            self._since_keyframe += 1
            self._next_seq = seq + 1
            self._tip = _State(self.boot_id, seq, doc, prior)
            self._tip_record = Record(self.boot_id, seq, wall_ns, payload)
            self._tip_change = None if change is None else StoredChange(seq, tip.seq, tip.doc, change, tip.prior)
            self._ring.append(seq, wall_ns, stored, flags, base)
            if spool is not None and not spool.append(seq, wall_ns, stored, flags, base):
                self._mark_seq(seq)
            return seq

    def _delta_frame(self, tip, doc, payload):
        """(the compressed delta frame turning the newest record into ``doc``,
        its change when applying it alone gives back ``payload`` byte for byte,
        else None); (None, None) when the frame would not give back ``payload``."""
        try:
            change = delta(tip.doc, doc, tip.prior)
            rebuilt = apply(change, tip.doc, tip.prior)
            frame = {"d": change}
            if encode_msgpack(rebuilt) != payload:
                fixes = key_order_fixes(rebuilt, doc)
                if not fixes or encode_msgpack(with_key_order(rebuilt, fixes)) != payload:
                    self._encoded["exact_fallbacks"] += 1
                    return None, None
                frame["o"] = fixes
                self._encoded["reordered"] += 1
            return zlib.compress(encode_msgpack(frame), self.compress_level), None if "o" in frame else change
        except _DELTA_ERRORS:
            self._encoded["exact_fallbacks"] += 1
            return None, None

    def newest_change(self, seq):
        """The :class:`StoredChange` of record ``seq`` when it is the newest and
        was stored as a delta that rebuilds it exactly without key-order fixes
        (what a subscriber's delta frame can reuse); else None."""
        with self._lock:
            change = self._tip_change
            return change if change is not None and change.seq == seq else None

    def flush(self):
        """Records are in the kernel once append returns; see :meth:`fsync`."""
        if self._spool is not None:
            with self._lock:
                self._spool.flush()

    def fsync(self):
        """Force the spool to stable storage now (also done every fsync interval)."""
        if self._spool is None:
            return True
        with self._lock:
            return self._spool.fsync()

    # -- reading --------------------------------------------------------------

    def _entry(self, boot_id, seq):
        """The stored form of a record (a RingEntry or SpoolRecord): from the
        ring for this boot, else from the spool; None when neither has it."""
        if boot_id == self.boot_id:
            entry = self._ring.get(seq)
            if entry is not None:
                return entry
        if self._spool is not None:
            return self._spool.get(seq, boot_id)
        return None

    @staticmethod
    def _inflate(data):
        try:
            unpacker = zlib.decompressobj()
            out = unpacker.decompress(data, MAX_PAYLOAD_BYTES)
            if not unpacker.eof or unpacker.unconsumed_tail:
                return None
            return out
        except zlib.error:
            return None

    def _uncompressed(self, entry):
        """The bytes a record stores, decompressed: a payload, or a delta frame."""
        if not entry.flags & FLAG_ZLIB:
            return bytes(entry.payload)
        return self._inflate(entry.payload)

    def _step(self, boot_id, base, entry):
        """(state, payload) of a record decoded on its base's state (None for a
        record that needs none); payload is None when only the document is
        known. (None, None) when it cannot be decoded."""
        data = self._uncompressed(entry)
        if data is None:
            return None, None
        if not entry.flags & FLAG_DELTA:
            doc = document_of(data)
            return _State(boot_id, entry.seq, doc, next_prior({}, doc)), data
        if base is None or base.doc is None or base.seq != entry.base_seq:
            return None, None
        try:
            frame = decode_msgpack(data)
            doc = apply(frame["d"], base.doc, base.prior)
            if "o" in frame:
                doc = with_key_order(doc, frame["o"])
        except _DELTA_ERRORS:
            return None, None
        if type(doc) is not dict:
            return None, None
        return _State(boot_id, entry.seq, doc, next_prior(base.prior, doc)), None

    def _state(self, boot_id, seq):
        """The state of record ``seq``: the last one rebuilt, else rebuilt from
        the nearest of it and its keyframe (at most keyframe_every - 1 delta
        frames); None when a record of the chain is missing or bad."""
        chain = []
        state = None
        while True:
            cursor = self._cursor
            if cursor is not None and cursor.boot_id == boot_id and cursor.seq == seq:
                state = cursor
                break
            entry = self._entry(boot_id, seq)
            if entry is None:
                return None
            chain.append(entry)
            if not entry.flags & FLAG_DELTA:
                break
            if entry.base_seq is None or entry.base_seq >= entry.seq:
                return None
            seq = entry.base_seq
        for entry in reversed(chain):
            state = self._step(boot_id, state, entry)[0]
            if state is None:
                return None
        return state

    def _decode(self, boot_id, entry):
        """The Record of a RingEntry or SpoolRecord, or None (counted) when it cannot be decoded."""
        newest = self._tip_record
        if newest is not None and boot_id == newest.boot_id and entry.seq == newest.seq:
            return newest
        needs_base = entry.flags & FLAG_DELTA and entry.base_seq is not None
        base = self._state(boot_id, entry.base_seq) if needs_base else None
        state, payload = self._step(boot_id, base, entry)
        if state is None:
            self._decode_errors += 1
            if self._spool is not None:
                self._spool.note_damage(boot_id, entry.seq, entry.seq)
            return None
        if payload is None:
            payload = encode_msgpack(state.doc)
        self._cursor = state
        return Record(boot_id, entry.seq, entry.wall_ns, payload)

    def _boot(self, boot_id):
        return self.boot_id if boot_id is None else lookup_id(boot_id)

    def latest(self):
        """The newest record of this boot; before this boot has one, the newest of
        the earlier boots (its boot_id says so); None when there is nothing."""
        with self._lock:
            entry = self._ring.newest()
            if entry is not None:
                return self._decode(self.boot_id, entry)
            if self._spool is None:
                return None
            boots = self._spool.boots()
            if self.boot_id in boots:
                boot = self.boot_id
            elif boots:
                boot = max(boots, key=lambda b: boots[b]["newest_wall_ns"])
            else:
                return None
            newest = boots[boot]["newest_seq"]
            record = self.get(newest, boot)
            if record is None:  # damaged since the scan: the newest one still readable
                readable = list(self._spool_records(boot, max(1, newest - self.keyframe_every), newest, None, None))
                record = readable[-1] if readable else None
            return record

    def get(self, seq, boot_id=None):
        """Record ``seq`` of ``boot_id`` (default: this boot), or None when it is not kept."""
        boot = self._boot(boot_id)
        with self._lock:
            if boot == self.boot_id:
                entry = self._ring.get(seq)
                if entry is not None:
                    return self._decode(boot, entry)
            if self._spool is None:
                return None
            found = self._spool.get(seq, boot)
            if found is None:
                return None
            return self._decode(boot, found)

    def _spool_records(self, boot, start_seq, end_seq, start_ns, end_ns):
        for found in self._spool.iter_range(start_seq, end_seq, boot_id=boot, start_ns=start_ns, end_ns=end_ns):
            record = self._decode(boot, found)
            if record is not None:
                yield record

    def range(self, start_seq=None, end_seq=None, start_ns=None, end_ns=None, limit=100, boot_id=None):
        """Records of one boot (default: this boot) with start_seq <= seq <= end_seq
        and start_ns <= wall_ns <= end_ns (None: unbounded), seq ascending, at
        most ``limit`` (None: no limit). Served from the ring where it has them,
        else from the spool; a record that fails its checks is left out."""
        if limit is not None and limit < 1:
            raise ValueError("limit must be >= 1, got %r" % (limit,))
        boot = self._boot(boot_id)
        out = []
        with self._lock:
            oldest = self._ring.oldest() if boot == self.boot_id else None
            if self._spool is not None and (oldest is None or start_seq is None or start_seq < oldest.seq):
                spool_end = end_seq
                if oldest is not None:
                    spool_end = oldest.seq - 1 if end_seq is None else min(end_seq, oldest.seq - 1)
                for record in self._spool_records(boot, start_seq, spool_end, start_ns, end_ns):
                    out.append(record)
                    if limit is not None and len(out) >= limit:
                        return out
            if oldest is not None:
                room = None if limit is None else limit - len(out)
                for entry in self._ring.range(start_seq, end_seq, start_ns, end_ns, room):
                    record = self._decode(boot, entry)
                    if record is not None:
                        out.append(record)
        return out

    # -- what is kept ---------------------------------------------------------

    def _boots(self):
        boots = self._spool.boots() if self._spool is not None else {}
        oldest, newest = self._ring.oldest(), self._ring.newest()
        if oldest is not None:
            mine = boots.get(self.boot_id)
            if mine is None or oldest.seq < mine["oldest_seq"]:
                mine = dict(mine or {}, oldest_seq=oldest.seq, oldest_wall_ns=oldest.wall_ns)
            if newest.seq > mine.get("newest_seq", 0):
                mine.update(newest_seq=newest.seq, newest_wall_ns=newest.wall_ns)
            boots[self.boot_id] = mine
        return boots

    def info(self):
        with self._lock:
            boots = self._boots()
            mine = boots.get(self.boot_id, {})
            listed = sorted(
                ({"boot_id": boot, "oldest_seq": b["oldest_seq"], "newest_seq": b["newest_seq"],
                  "oldest_wall_ns": b["oldest_wall_ns"], "newest_wall_ns": b["newest_wall_ns"]}
                 for boot, b in boots.items()),
                key=lambda b: (b["oldest_wall_ns"], b["boot_id"]))
            return {
                "agent_id": self.agent_id,
                "boot_id": self.boot_id,
                "oldest_seq": mine.get("oldest_seq"),
                "newest_seq": mine.get("newest_seq"),
                "oldest_wall_ns": mine.get("oldest_wall_ns"),
                "newest_wall_ns": mine.get("newest_wall_ns"),
                "next_seq": self._next_seq,
                "boots": listed,
                "retention": dict(self._retention),
                "ring": {"records": len(self._ring), "bytes": self._ring.bytes, "evicted": self._ring.evicted},
                "spool": self._spool.stats() if self._spool is not None else None,
                "decode_errors": self._decode_errors,
                "encoding": dict(self._encoded, keyframe_every=self.keyframe_every),
                "problems": list(self._problems),
            }

    def damaged(self, boot_id, start_seq, end_seq):
        """[(start, end)] inside start_seq..end_seq (inclusive) of records of a
        boot known lost to damage: a record that failed its checks on disk, or
        one whose delta chain such a record broke. The rest of a hole in the
        history is records not kept (aged out, or memory only at a restart)."""
        if self._spool is None:
            return []
        with self._lock:
            runs = self._spool.damaged(self._boot(boot_id))
        return [(max(start, start_seq), min(end, end_seq)) for start, end in runs
                if start <= end_seq and end >= start_seq]

    def gaps(self):
        """Missing seq ranges inside each boot's kept history, ascending:
        [{"boot_id", "start_seq", "end_seq"}] (inclusive). A gap comes from a
        record skipped as corrupt, or written to the ring alone (full disk) and
        gone with a restart. Records before a boot's oldest kept one (aged out)
        are not gaps: ``info()`` gives where each boot's history starts."""
        with self._lock:
            boots = self._boots()
            out = []
            for boot in sorted(boots, key=lambda b: boots[b]["oldest_wall_ns"]):
                runs = list(self._spool.seq_runs(boot)) if self._spool is not None else []
                if boot == self.boot_id:
                    runs.extend(self._ring.seq_runs())
                    marked = self._marked_seq
                    if marked is not None and runs and marked >= min(runs)[0]:
                        # Seqs up to the mark were handed out: an empty run that ends there.
                        runs.append((marked + 1, marked))
                covered = None
                for start, end in sorted(runs):
                    if covered is not None and start > covered + 1:
                        out.append({"boot_id": boot, "start_seq": covered + 1, "end_seq": start - 1})
                    covered = end if covered is None else max(covered, end)
            return out

    def close(self):
        """fsync and close the spool; the History is unusable afterwards."""
        with self._lock:
            if self._spool is not None:
                self._spool.close()
            if self._seqmark_fd is not None:
                os.close(self._seqmark_fd)
                self._seqmark_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
