"""Hypothesis settings for the fuzz tests.

``make test`` runs a small, fixed-seed sample (``derandomize``) so the suite is stable;
``CADENCE_FUZZ_EXAMPLES=N`` multiplies nothing and sets every test's count to N, and
``CADENCE_FUZZ_SEED=random`` draws new inputs each run. The large run is
``make fuzz`` (benchmarks/fuzz_run.py), which counts every failure instead of stopping at the first.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings


def fuzz_settings(examples: int, shrink: bool = True) -> settings:
    """``shrink=False``: a failing case is reported as drawn, at once (shrinking a case that drives a plan for
    hundreds of steps, or several distinct failures, takes minutes; ``make fuzz`` keeps the shortest inputs)."""
    n = int(os.environ.get("CADENCE_FUZZ_EXAMPLES", examples))
    extra = {} if shrink else {"phases": [Phase.explicit, Phase.reuse, Phase.generate], "report_multiple_bugs": False}
    return settings(max_examples=n, deadline=None, database=None,
                    derandomize=os.environ.get("CADENCE_FUZZ_SEED") != "random",
                    suppress_health_check=list(HealthCheck), **extra)
