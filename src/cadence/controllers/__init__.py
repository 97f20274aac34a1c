"""Controllers: values that observe the run (issue 10, the closed loop; in progress).

A controller is ``init() -> state``, ``update(state, clock, signals) -> state`` and
``value(state, clock)``, with state as plain data. This package holds the building blocks
that are done and tested: the reduce-on-plateau rule (``plateau_rule``) and the gradient
noise-scale estimators (``noise``). The Plan that binds them to channels comes next.
"""

from cadence.controllers.noise import NoiseScale, noise_scale
from cadence.controllers.plateau_rule import PlateauRule

__all__ = ["NoiseScale", "noise_scale", "PlateauRule"]
