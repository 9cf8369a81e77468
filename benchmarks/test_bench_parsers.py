"""Hot parsers side by side, one pytest-benchmark group per /proc file.

In each group, on the same live file and in the same run:

* ``raw_read``: the floor, open + read to EOF + close of the file, nothing else;
* ``read+compiled``: HostRoot.read, then the compiled parser (what a snapshot does);
* ``read+pure``: HostRoot.read, then the pure-Python twin;
* ``psutil``: psutil's nearest public call, which reads the same file (skipped,
  with the reason, where psutil has none);
* ``compiled parse only`` / ``pure parse only``: the parser on bytes read once
  beforehand, to tell parsing from reading.

Run: ``python -m pytest benchmarks -q`` (see benchmarks/README.md).
"""

import pytest

psutil = pytest.importorskip("psutil")

from benchsupport import (  # noqa: E402  (after the importorskip)
    COMPILED, COMPILED_ONLY, PSUTIL, PURE, PURE_ONLY, RAW, raw_read,
)


def _psutil_stat():
    return psutil.cpu_times(percpu=True), psutil.cpu_stats()


def _psutil_meminfo():
    return psutil.virtual_memory()


def _psutil_vmstat():
    # swap_memory reads /proc/meminfo and /proc/vmstat (swap in/out pages).
    return psutil.swap_memory()


def _psutil_diskstats():
    return psutil.disk_io_counters(perdisk=True)


def _psutil_netdev():
    return psutil.net_io_counters(pernic=True)


# group name -> (path under /proc, parser name, psutil's nearest call or the reason there is none)
FILES = {
    "stat": (("stat",), "parse_stat", _psutil_stat),
    "meminfo": (("meminfo",), "parse_keyvalue", _psutil_meminfo),
    "vmstat": (("vmstat",), "parse_keyvalue", _psutil_vmstat),
    "net/snmp": (("net", "snmp"), "parse_twoline", "no psutil equivalent for /proc/net/snmp"),
    "net/netstat": (("net", "netstat"), "parse_twoline", "no psutil equivalent for /proc/net/netstat"),
    "diskstats": (("diskstats",), "parse_diskstats", _psutil_diskstats),
    "net/dev": (("net", "dev"), "parse_netdev", _psutil_netdev),
    "net/softnet_stat": (("net", "softnet_stat"), "parse_softnet",
                         "no psutil equivalent for /proc/net/softnet_stat"),
}

VARIANTS = (RAW, COMPILED, PURE, PSUTIL, COMPILED_ONLY, PURE_ONLY)

PSUTIL_CALLS = {
    "stat": "psutil.cpu_times(percpu=True) + psutil.cpu_stats()",
    "meminfo": "psutil.virtual_memory()",
    "vmstat": "psutil.swap_memory() (reads meminfo too)",
    "diskstats": "psutil.disk_io_counters(perdisk=True)",
    "net/dev": "psutil.net_io_counters(pernic=True)",
}


def _group(name):
    return "parse " + name


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", list(FILES))
def test_parser(bench, results, request, host_root, name, variant):
    parts, parser_name, psutil_call = FILES[name]
    path = host_root.proc(*parts)
    bench.group = _group(name)
    bench.extra_info.update({"variant": variant, "file": path, "parser": parser_name})
    if not callable(psutil_call):
        results.notes[bench.group] = psutil_call
        bench.extra_info["psutil"] = psutil_call
    else:
        bench.extra_info["psutil"] = PSUTIL_CALLS[name]

    data = host_root.read(path)
    bench.extra_info["bytes"] = len(data)

    if variant == RAW:
        bench(raw_read, path)
        return
    if variant == PSUTIL:
        if not callable(psutil_call):
            pytest.skip(psutil_call)
        bench(psutil_call)
        return

    if variant in (COMPILED, COMPILED_ONLY):
        module = request.getfixturevalue("compiled_parsers")
    else:
        module = request.getfixturevalue("pure_parsers")
    parse = getattr(module, parser_name)
    _, malformed = parse(data)
    bench.extra_info["malformed"] = malformed

    if variant in (COMPILED_ONLY, PURE_ONLY):
        bench(parse, data)
        return

    read = host_root.read

    def read_and_parse():
        return parse(read(path))

    bench(read_and_parse)
