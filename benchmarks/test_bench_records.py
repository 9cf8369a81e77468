"""Which representation a table record should have: measured on 5,000
process records (see benchmarks/README.md, "Record representation").

Contestants, each built from the same 5,000 value lists (the order of
:data:`hostdiag.model.records.PROCESS`, real records of this host's process
table repeated with distinct pids):

* ``dict``: what the process table carries today, ``dict(zip(names, values))``;
* ``dataclass(slots=True)``: one generated class with the declared fields;
* ``NamedTuple``: ``collections.namedtuple`` with the declared fields;
* ``tuple + field list``: a plain tuple, the names declared once beside the
  rows (as the socket table's ``tcp_table`` does).

Measured: building the 5,000 records, and encoding them with msgpack as the
wire and the store do (a dict encodes its keys in every record; a dataclass
must first be turned into plain data, here a row per record by one
``attrgetter``; named and plain tuples encode as arrays, the field list once),
plus the encoded size in bytes (printed with ``-s`` and kept in
``extra_info``).

Run: ``python -m pytest benchmarks/test_bench_records.py -q -s --benchmark-timer=time.process_time``.
"""

import collections
import dataclasses
import operator

import msgpack
import pytest

from hostdiag.model.records import PROCESS
from hostdiag.sources.proc_pid import ProcessTable
from hostdiag.sources.problems import Problems

RECORDS = 5000
NAMES = PROCESS.names
GROUP_BUILD = "records: build 5,000 process records"
GROUP_ENCODE = "records: msgpack encode 5,000 process records"

ProcessTuple = collections.namedtuple("ProcessTuple", NAMES)
ProcessSlots = dataclasses.make_dataclass("ProcessSlots", NAMES, slots=True)
_as_row = operator.attrgetter(*NAMES)


def _pack(data):
    return msgpack.packb(data, use_bin_type=True)


@pytest.fixture(scope="module")
def values(host_root):
    """5,000 value lists in declared order, from this host's real process table."""
    section = ProcessTable(host_root).scan(Problems())
    real = [[record[name] for name in NAMES] for record in section["processes"]]
    assert real, "the process table of this host is empty"
    out = []
    for i in range(RECORDS):
        row = list(real[i % len(real)])
        row[NAMES.index("pid")] = 100000 + i
        out.append(row)
    return out


# variant -> (build from value lists, encode the built records)
VARIANTS = {
    "dict": (lambda rows: [dict(zip(NAMES, row)) for row in rows],
             lambda records: _pack(records)),
    "dataclass(slots=True)": (lambda rows: [ProcessSlots(*row) for row in rows],
                              lambda records: _pack({"fields": NAMES,
                                                     "rows": [_as_row(r) for r in records]})),
    "NamedTuple": (lambda rows: [ProcessTuple(*row) for row in rows],
                   lambda records: _pack({"fields": NAMES, "rows": records})),
    "tuple + field list": (lambda rows: [tuple(row) for row in rows],
                           lambda records: _pack({"fields": NAMES, "rows": records})),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_build(bench, values, variant):
    build, _ = VARIANTS[variant]
    bench.group = GROUP_BUILD
    bench.extra_info["variant"] = variant
    records = bench(build, values)
    assert len(records) == RECORDS


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_msgpack_encode(bench, values, variant):
    build, encode = VARIANTS[variant]
    records = build(values)
    bench.group = GROUP_ENCODE
    bench.extra_info["variant"] = variant
    payload = bench(encode, records)
    bench.extra_info["bytes"] = len(payload)
    bench.extra_info["bytes_per_record"] = round(len(payload) / RECORDS, 1)
    decoded = msgpack.unpackb(payload, raw=False)
    first = decoded[0] if isinstance(decoded, list) else dict(zip(decoded["fields"], decoded["rows"][0]))
    assert first["pid"] == 100000 and list(first) == list(NAMES)
    print("\n%s: %d bytes for %d records (%.1f per record)"
          % (variant, len(payload), RECORDS, len(payload) / RECORDS))
