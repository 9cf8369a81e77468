"""The budget of the property-based fuzz tests (test_fuzz_frames.py,
test_fuzz_config.py, parsers/test_fuzz_parsers.py).

``HOSTDIAG_FUZZ_EXAMPLES`` is the number of examples each fuzz property runs
(default :data:`DEFAULT_EXAMPLES`, which keeps the three files within about a
minute on two cores; raise it for a longer hunt). With ``CI=true`` (the CI
runner's environment) the examples are derandomized: the same inputs on every
run, so a CI failure is a real regression that reproduces, not a new find.
Examples carry no deadline: a slow example on a loaded machine is not a bug.
"""

import os

from hypothesis import HealthCheck, settings

DEFAULT_EXAMPLES = 200
FUZZ_EXAMPLES_ENV = "HOSTDIAG_FUZZ_EXAMPLES"


def _examples():
    raw = os.environ.get(FUZZ_EXAMPLES_ENV, "")
    if not raw:
        return DEFAULT_EXAMPLES
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError("%s must be a positive integer, got %r" % (FUZZ_EXAMPLES_ENV, raw))
    return int(raw)


IN_CI = os.environ.get("CI", "").lower() == "true"

FUZZ = settings(
    max_examples=_examples(),
    deadline=None,
    derandomize=IN_CI,
    database=None if IN_CI else settings.default.database,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture],
)
