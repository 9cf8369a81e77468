"""`diag show` at a record without tables takes every table (processes,
sockets, cgroups, network namespaces) from the nearest record that has them,
with their rates: real samples of this host, stored as the agent stores them."""

import pytest

from hostdiag.apps.history_readers import Moment, Rec
from hostdiag.encode.wire import decode_msgpack, encode_msgpack
from hostdiag.sampler import Sampler
from hostdiag.sources.hostroot import HostRoot


@pytest.fixture(scope="module")
def records():
    """Records 10 and 11 with the tables, 12 without: three real samples."""
    with Sampler(HostRoot()) as sampler:
        taken = [sampler.sample(), sampler.sample(), sampler.sample(tables=False)]
    return [Rec(s.meta.boot_id, seq, s.meta.wall_ns, decode_msgpack(encode_msgpack(s.to_dict())))
            for seq, s in zip((10, 11, 12), taken)]


def test_a_record_without_tables_is_shown_with_the_nearest_ones(records):
    tables_previous, tables, record = records
    assert record.snapshot["cgroups"] is None and record.snapshot["netns"] is None
    moment = Moment(record.wall_ns, record, tables, None, (tables, tables_previous))
    for section in ("processes", "sockets", "cgroups", "netns"):
        assert getattr(moment.snapshot, section) == tables.snapshot[section], section
    if tables.snapshot["cgroups"] is not None:
        paths = [row["path"] for row in tables.snapshot["cgroups"]["cgroups"]]
        assert sorted(moment.rates["cgroups"]) == sorted(paths)
    assert moment.rates["netns"] is not None and moment.rates["processes"]
