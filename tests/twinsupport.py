"""Both twins of a parser pair, for tests: the compiled module and its pure twin.

``compiled_twin("procpid")`` imports ``hostdiag._procpid``. A missing extension
fails the test, unless HOSTDIAG_PURE is set (a pure build has none), so a broken
build is never mistaken for a passing suite. ``twin_fixture("procpid")`` makes
the ``impl`` fixture that runs a test once over each twin.
"""

import importlib

import pytest

from hostdiag.parsers import PURE_ENV, pure_forced


def pure_twin(name):
    return importlib.import_module("hostdiag.parsers." + name)


def compiled_twin(name):
    try:
        return importlib.import_module("hostdiag._" + name)
    except ImportError as exc:
        if pure_forced():
            pytest.skip("%s is set and hostdiag._%s is not built: %s" % (PURE_ENV, name, exc))
        pytest.fail("hostdiag._%s cannot be imported and %s is not set (a broken build): %s"
                    % (name, PURE_ENV, exc))


def twin_fixture(name):
    """A fixture parametrised over the compiled and the pure twin of ``name``."""

    @pytest.fixture(params=["compiled", "pure"])
    def impl(request):
        return compiled_twin(name) if request.param == "compiled" else pure_twin(name)

    return impl


def compiled_fixture(name):
    """A module-scoped fixture giving the compiled twin of ``name``."""

    @pytest.fixture(scope="module")
    def compiled():
        return compiled_twin(name)

    return compiled
