"""The agent's history: a bounded memory ring in front of a crash-safe on-disk spool.

The store keeps records (raw snapshot bytes) and knows nothing of what is in
them: it imports no other hostdiag layer. docs/spool.md has the on-disk format.
"""

from hostdiag.store.history import History, Record
from hostdiag.store.ring import Ring, RingEntry
from hostdiag.store.spool import Spool, SpoolError, SpoolLocked, SpoolRecord

__all__ = ["History", "Record", "Ring", "RingEntry", "Spool", "SpoolError", "SpoolLocked", "SpoolRecord"]
