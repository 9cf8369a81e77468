"""The snapshot model: typed, raw cumulative counters, no I/O."""

from hostdiag.model.snapshot import SCHEMA_VERSION, Cpu, ErrorRecord, Memory, Meta, Snapshot

__all__ = ["SCHEMA_VERSION", "Cpu", "ErrorRecord", "Memory", "Meta", "Snapshot"]
