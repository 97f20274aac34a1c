"""Schedules: pure functions of training progress, and combinators to build them.

Every factory returns a :class:`Schedule` ``s``; ``s.values(total_steps)`` gives one value
per optimizer step, ``s.value_at(step, total_steps)`` one of them (bit-identical),
``s.chunks(total_steps)`` the same values piece by piece for runs of any length, and
``s.spec()`` the string that :func:`parse` turns back into the same schedule. The limits
every call respects are in :mod:`cadence.schedules.limits` (docs/schedules.md, "Limits").
"""

from cadence.schedules.base import SHAPES, WARMUP_SHAPES, Schedule
from cadence.schedules.combinators import Clip, DecayFrom, Join, Replanned, Rewarm, Scale, Warmup
from cadence.schedules.families import (
    SGDR, WSD, Constant, Cosine, Cyclic, Exponential, Infinite, InverseSqrt, Linear, MultiStep, OneCycle,
    Piecewise, Polynomial, Power, Ramp, Rex, Step,
)
from cadence.schedules.registry import REGISTRY, entries, register
from cadence.schedules.spec import parse

FAMILIES = (Constant, Linear, Cosine, SGDR, Step, MultiStep, Exponential, Polynomial, InverseSqrt, OneCycle, Cyclic,
            WSD, Rex, Power, Infinite, Piecewise, Ramp)
COMBINATORS = (Warmup, Join, Scale, Clip, DecayFrom, Rewarm, Replanned)
for _cls in FAMILIES:
    register(_cls, kind="family")
for _cls in COMBINATORS:
    register(_cls, kind="combinator")

# The public factories: cadence.schedules.<family>(**params).
constant, linear, cosine, sgdr, step, multistep = Constant, Linear, Cosine, SGDR, Step, MultiStep
exponential, polynomial, inverse_sqrt, onecycle, cyclic = Exponential, Polynomial, InverseSqrt, OneCycle, Cyclic
wsd, rex, power, infinite, piecewise, ramp = WSD, Rex, Power, Infinite, Piecewise, Ramp
warmup, join, scale, clip, decay_from, rewarm, replanned = Warmup, Join, Scale, Clip, DecayFrom, Rewarm, Replanned
cosine_restarts = SGDR  # the name torch users look for

__all__ = [
    "Schedule", "parse", "REGISTRY", "register", "entries", "FAMILIES", "COMBINATORS", "SHAPES", "WARMUP_SHAPES",
    "constant", "linear", "cosine", "sgdr", "cosine_restarts", "step", "multistep", "exponential", "polynomial",
    "inverse_sqrt", "onecycle", "cyclic", "wsd", "rex", "power", "infinite", "piecewise", "ramp",
    "warmup", "join", "scale", "clip", "decay_from", "rewarm", "replanned",
]
