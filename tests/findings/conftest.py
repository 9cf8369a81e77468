"""Fixtures of the findings tests: a real snapshot of this host, and a calm pair."""

import copy

import pytest

from findingedits import calm
from hostdiag.sampler.system import SystemCollector
from hostdiag.sources.hostroot import HostRoot


@pytest.fixture(scope="module")
def real_snapshot():
    with SystemCollector(HostRoot()) as collector:
        return collector.collect()


@pytest.fixture
def pair(real_snapshot):
    """(prev, cur): calm copies of the real snapshot, one second apart."""
    prev = calm(real_snapshot)
    cur = copy.deepcopy(prev)
    cur.meta.mono_ns = prev.meta.mono_ns + 1_000_000_000
    return prev, cur
