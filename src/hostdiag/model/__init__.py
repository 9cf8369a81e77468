"""The snapshot model: typed, raw cumulative counters, no I/O.

:mod:`~hostdiag.model.snapshot` holds the snapshot and its typed sections;
:mod:`~hostdiag.model.records` declares the fields of the tables' records.
"""

from hostdiag.model.records import (
    DISK, FILESYSTEM, LINK, LISTENER, PROCESS, RECORDS, TCP_SOCKET_ROW, Field, Record,
)
from hostdiag.model.snapshot import SCHEMA_VERSION, Cpu, ErrorRecord, Memory, Meta, Snapshot

__all__ = [
    "DISK", "FILESYSTEM", "LINK", "LISTENER", "PROCESS", "RECORDS", "SCHEMA_VERSION",
    "TCP_SOCKET_ROW", "Cpu", "ErrorRecord", "Field", "Memory", "Meta", "Record", "Snapshot",
]
