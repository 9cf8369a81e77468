"""The collector's store chosen by its location: a directory is SQLite (store/sqlite.py),
``clickhouse://HOST:PORT/DATABASE`` the fleet store (store/clickhouse.py). Both offer the
same writing and reading methods; StoreError is the one error either raises."""

from hostdiag.store import fleet_clickhouse, fleet_sqlite
from hostdiag.store.clickhouse import ClickHouseStore, is_url
from hostdiag.store.sqlite import CollectorStore, StoreError

__all__ = ["open_collector_store", "fleet_queries", "is_url", "StoreError"]


def open_collector_store(location, readonly=False, max_host_bytes=None, max_host_age_s=None, findings=True):
    """The store at ``location``; limits left None keep the store's defaults.
    ``findings``: a writer evaluates and keeps each record's findings."""
    options = {"findings": findings}
    if max_host_age_s is not None:
        options["max_host_age_s"] = max_host_age_s
    if is_url(location):
        return ClickHouseStore(location, readonly=readonly, **options)
    if max_host_bytes is not None:
        options["max_host_bytes"] = max_host_bytes
    return CollectorStore(location, readonly=readonly, **options)


def fleet_queries(store):
    """The module that answers `diag fleet` on ``store``: store/fleet_clickhouse.py
    (one SQL query per question) or store/fleet_sqlite.py (the fallback); both
    offer ``hosts``, ``findings`` and ``top`` with the same rows."""
    return fleet_clickhouse if isinstance(store, ClickHouseStore) else fleet_sqlite
