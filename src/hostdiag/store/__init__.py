"""The agent's history: a bounded memory ring in front of a crash-safe on-disk spool.

The store keeps records (raw snapshot bytes) and gives back exactly the bytes it
was given. The spool and the ring treat them as opaque; the history stores each
as a change from the one before, with the encoders of hostdiag.encode (the only
other layer the store imports). docs/spool.md has the on-disk format.
"""

from hostdiag.store.history import History, Record
from hostdiag.store.ring import Ring, RingEntry
from hostdiag.store.spool import Spool, SpoolError, SpoolLocked, SpoolRecord

__all__ = ["History", "Record", "Ring", "RingEntry", "Spool", "SpoolError", "SpoolLocked", "SpoolRecord"]
