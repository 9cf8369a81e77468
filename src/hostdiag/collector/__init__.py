"""`diag collector`: pulls snapshots from agents over their protocol into an
embedded store on local disk (SQLite in WAL mode; docs/collector.md says why).

- :mod:`hostdiag.collector.store`: the store: raw snapshots per host, keyed
  by (host, agent id, boot id, seq), with gaps, status and retention.
- :mod:`hostdiag.collector.service`: the pullers, the writer and
  ``main_collector``.
"""
