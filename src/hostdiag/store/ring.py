"""A bounded in-memory ring of records, the agent's most recent history.

Bounded twice: by the number of records and by the sum of their payload sizes
(bytes; the per-record bookkeeping, about 150 bytes, is not counted). The
oldest records are evicted first; the newest is always kept, even when it
alone exceeds ``max_bytes``, so the latest record is always there.

A record may name a base (``base_seq``), an earlier record it needs to be
decoded, and the ring never keeps a record without its base: it evicts a
*chain* (a record without a base and those after it that need it) whole.
``max_records`` is a promise about the newest records: the newest
``max_records`` are always held, so a chain goes only once the records after
it number ``max_records`` at least; the ring then holds up to ``max_records``
plus one chain less one record. ``max_bytes`` is a hard bound: over it, chains
go from the oldest until it holds (the newest record excepted, as above).
"""

from bisect import bisect_left, bisect_right
from collections import namedtuple

RingEntry = namedtuple("RingEntry", "seq wall_ns payload flags base_seq")
RingEntry.__doc__ = """``flags`` and ``base_seq`` are the caller's, kept as given (see Spool.append)."""

# Evicted slots are compacted away once they are this many and half the list.
_COMPACT_AT = 256


class Ring:
    """Records with strictly increasing seqs; get by seq, range by seq and wall time."""

    def __init__(self, max_records, max_bytes):
        if max_records < 1 or max_bytes < 1:
            raise ValueError("max_records and max_bytes must be >= 1, got %r and %r"
                             % (max_records, max_bytes))
        self.max_records = int(max_records)
        self.max_bytes = int(max_bytes)
        self._entries = []
        self._seqs = []
        self._head = 0  # entries before it are evicted
        self._bytes = 0
        self.evicted = 0

    def __len__(self):
        return len(self._entries) - self._head

    @property
    def bytes(self):
        """Sum of the payload sizes held, in bytes."""
        return self._bytes

    def append(self, seq, wall_ns, payload, flags=0, base_seq=None):
        """Add the newest record; returns how many old records were evicted."""
        if len(self) and seq <= self._seqs[-1]:
            raise ValueError("seq %d is not above the newest seq %d" % (seq, self._seqs[-1]))
        self._entries.append(RingEntry(seq, wall_ns, payload, flags, base_seq))
        self._seqs.append(seq)
        self._bytes += len(payload)
        evicted = 0
        while len(self) > 1 and (self._bytes > self.max_bytes
                                 or self._entries[self._head].base_seq is not None
                                 or len(self._entries) - self._chain_end() >= self.max_records):
            self._bytes -= len(self._entries[self._head].payload)
            self._entries[self._head] = None
            self._head += 1
            evicted += 1
        if self._head >= _COMPACT_AT and self._head * 2 >= len(self._entries):
            del self._entries[:self._head]
            del self._seqs[:self._head]
            self._head = 0
        self.evicted += evicted
        return evicted

    def _chain_end(self):
        """The index just past the oldest chain: its next record without a base."""
        end = self._head + 1
        while end < len(self._entries) and self._entries[end].base_seq is not None:
            end += 1
        return end

    def oldest(self):
        return self._entries[self._head] if len(self) else None

    def newest(self):
        return self._entries[-1] if len(self) else None

    def get(self, seq):
        """The entry with this seq, or None."""
        i = bisect_left(self._seqs, seq, self._head)
        if i < len(self._seqs) and self._seqs[i] == seq:
            return self._entries[i]
        return None

    def range(self, start_seq=None, end_seq=None, start_ns=None, end_ns=None, limit=None):
        """Entries with start_seq <= seq <= end_seq and start_ns <= wall_ns <= end_ns
        (None: unbounded), seq ascending, at most ``limit`` (None: all)."""
        lo = self._head if start_seq is None else bisect_left(self._seqs, start_seq, self._head)
        hi = len(self._seqs) if end_seq is None else bisect_right(self._seqs, end_seq, self._head)
        out = []
        for i in range(lo, hi):
            entry = self._entries[i]
            if (start_ns is not None and entry.wall_ns < start_ns) or (end_ns is not None and entry.wall_ns > end_ns):
                continue
            out.append(entry)
            if limit is not None and len(out) >= limit:
                break
        return out

    def seq_runs(self):
        """[(start_seq, end_seq)] of consecutive seqs held, ascending."""
        runs = []
        for i in range(self._head, len(self._seqs)):
            seq = self._seqs[i]
            if runs and runs[-1][1] + 1 == seq:
                runs[-1][1] = seq
            else:
                runs.append([seq, seq])
        return [tuple(run) for run in runs]
