"""What evaluating findings costs the collector's writer, per record (CPU time).

Takes ``--samples`` snapshots of this host (the tables every ``--table-every``
samples, as the agent), then has a FindingsStream (findings/stream.py, what
both collector stores run for each record they store) evaluate them in seq
order ``--rounds`` times, and prints the median CPU milliseconds of a record
with the tables and of one without, and their mean per record: for records
without a ``findings`` section (an older agent's: the stream evaluates
them), then for the same records carrying the findings an agent judged (the
stream takes them; SQLite asks for no rates, ClickHouse for the rates of a
record with the tables).

    PYTHONPATH=src python benchmarks/collector_findings.py [--samples 10] [--rounds 10]
"""

import argparse
import time

from hostdiag.encode.delta import document_of
from hostdiag.encode.wire import encode_msgpack
from hostdiag.findings.stream import FindingsStream, findings_section
from hostdiag.sampler import Sampler
from hostdiag.sources.hostroot import HostRoot

# Wall seconds between two snapshots, so that the rates are not over nothing.
SAMPLE_GAP_S = 0.05


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--table-every", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    docs = []
    with Sampler(HostRoot()) as sampler:
        for i in range(args.samples):
            docs.append(document_of(encode_msgpack(sampler.sample(tables=i % args.table_every == 0).to_dict())))
            time.sleep(SAMPLE_GAP_S)
    processes = len(docs[0]["processes"]["processes"])
    judge = FindingsStream()  # what the agent judged: the same rules over the same bases
    carrying = [dict(doc, findings=findings_section(judge.evaluate("host", "agent", "boot", seq, doc).findings))
                for seq, doc in enumerate(docs, 1)]
    for label, records, want_rates in (("without findings (evaluated)", docs, False),
                                       ("carrying findings, SQLite", carrying, False),
                                       ("carrying findings, ClickHouse", carrying, True)):
        median = _median_ms(records, args.rounds, want_rates)
        mean = (median[True] + (args.table_every - 1) * median[False]) / args.table_every
        print("%d processes, %s: %.2f ms CPU a record with the tables, %.2f ms without; %.2f ms a record at "
              "the tables every %d" % (processes, label, median[True], median[False], mean, args.table_every))


def _median_ms(docs, rounds, want_rates):
    """{has tables: median CPU ms of the stream on such a record}."""
    spent = {True: [], False: []}
    stream = FindingsStream()
    for round_ in range(rounds):
        stream.clear()
        for seq, doc in enumerate(docs, 1):
            start = time.process_time()
            stream.evaluate("host", "agent", "boot%d" % round_, seq, doc,
                            want_rates=want_rates and doc.get("processes") is not None)
            if seq > 1:  # the first has no rates: nothing to compare
                spent[doc.get("processes") is not None].append(time.process_time() - start)
    return {k: sorted(v)[len(v) // 2] * 1e3 for k, v in spent.items()}

if __name__ == "__main__":
    main()
