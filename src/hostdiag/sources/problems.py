"""What a collection could not read, kept as structured entries for meta.errors.

Sources never swallow an error: a missing, unreadable or malformed input gives
``None`` for that part of the snapshot and one entry here.
"""

from hostdiag.sources.hostroot import MALFORMED, SourceError


class Problems:
    """The error log of one collection. Entries are dicts with the keys
    ``source``, ``path``, ``kind``, ``message`` and ``count`` (lines or items
    affected, 1 for a whole-file failure)."""

    # A hostile tree could produce an entry per file; the log stays bounded.
    MAX_ENTRIES = 256

    def __init__(self):
        self.entries = []
        self.dropped = 0

    def add(self, source, path, kind, message, count=1):
        if len(self.entries) >= self.MAX_ENTRIES:
            self.dropped += 1
            return
        self.entries.append(
            {"source": source, "path": path, "kind": kind, "message": message, "count": count}
        )

    def read(self, root, source, path, cap=None):
        """The bytes at ``path``, or None with an entry recorded."""
        try:
            return root.read(path, cap)
        except SourceError as exc:
            self.add(source, exc.path, exc.kind, exc.message)
            return None

    def parse(self, root, source, path, parser):
        """Read ``path`` and parse it; None when unreadable. Skipped lines are
        recorded as one ``malformed`` entry with their count."""
        # root.read is called here, not through self.read: one Python call
        # less per file in every sample.
        try:
            data = root.read(path)
        except SourceError as exc:
            self.add(source, exc.path, exc.kind, exc.message)
            return None
        result, malformed = parser(data)
        if malformed:
            self.add(source, path, MALFORMED, "%d malformed line(s) skipped" % malformed, malformed)
        return result

    def all(self):
        entries = list(self.entries)
        if self.dropped:
            entries.append({"source": "meta", "path": "", "kind": "truncated",
                            "message": "%d further error(s) not kept" % self.dropped,
                            "count": self.dropped})
        return entries
