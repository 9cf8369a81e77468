"""What the benchmark files share: the variant names, the raw-read floor, the
loader of a compiled twin and the store of results the end-of-session summary
prints."""

import importlib
import os

import pytest

from hostdiag import parsers as live_parsers

# Variants, in the order the summary prints them.
RAW = "raw_read"
COMPILED = "read+compiled"
PURE = "read+pure"
PSUTIL = "psutil"
COMPILED_ONLY = "compiled parse only"
PURE_ONLY = "pure parse only"

# Read sizes of the raw floor: the same HostRoot.read asks for (16 KiB, then
# 16 KiB for the read that finds EOF, and 256 KiB reads only past that), so
# the floor pays the kernel exactly what collect() pays.
RAW_FIRST_CHUNK = 16 * 1024
RAW_CHUNK = 256 * 1024


def compiled_twin(name):
    """``hostdiag._NAME``, the compiled twin of ``hostdiag.parsers.NAME``, or a
    skip saying why it is not under test."""
    if live_parsers.pure_forced():
        pytest.skip("%s is set: the compiled parsers are not under test" % live_parsers.PURE_ENV)
    try:
        return importlib.import_module("hostdiag._" + name)
    except ImportError as exc:
        pytest.skip("compiled extension hostdiag._%s unavailable: %s" % (name, exc))


def live_description():
    """Which twins ``collect()`` runs on, and why: one line."""
    return "%s (%s)" % (live_parsers.implementation(), "; ".join(
        "%s %s" % (module, impl) for module, (impl, _) in sorted(live_parsers.TWINS.items())))


def raw_read(path):
    """The floor: open, read to EOF, close; no error mapping, no size cap."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, RAW_FIRST_CHUNK)
        more = os.read(fd, RAW_FIRST_CHUNK) if data else b""
        if not more:
            return data
        chunks = [data, more]
        while True:
            chunk = os.read(fd, RAW_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


class Results:
    """What the benchmarks measured, kept for the end-of-session summary.

    ``medians[group][variant]`` holds median wall seconds per call;
    ``cpu[label]`` holds ``{"cpu_s": seconds per call, "n": calls, "note": ...}``;
    ``notes[group]`` holds a line such as "no psutil equivalent";
    ``paired[kind]`` holds goal (1)'s paired measurement of one collector
    (median ratio to its floor, quartiles, medians in µs).
    """

    def __init__(self):
        self.medians = {}
        self.cpu = {}
        self.notes = {}
        self.paired = {}

    def record(self, benchmark):
        stats = benchmark.stats
        if stats is None or not stats.stats.data:
            return
        variant = benchmark.extra_info.get("variant", benchmark.name)
        self.medians.setdefault(benchmark.group, {})[variant] = stats.stats.median


RESULTS = Results()
