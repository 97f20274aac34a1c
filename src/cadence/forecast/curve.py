"""One training run as forecasting sees it: losses at some steps, and the LR of every step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cadence.errors import ForecastError, LimitError
from cadence.forecast.limits import MAX_STEPS

__all__ = ["Curve", "ForecastError", "as_vector"]


def as_vector(values, name: str, where: str = "") -> np.ndarray:
    """``values`` as a 1-D float64 array; a one-line ForecastError for anything else
    (strings, nested lists, objects, more than ``MAX_STEPS`` entries)."""
    if isinstance(values, (str, bytes)):
        raise ForecastError(f"{where}{name} must be a 1-D sequence of numbers; got a string")
    try:
        n = len(values)
    except TypeError:
        raise ForecastError(f"{where}{name} must be a 1-D sequence of numbers; got {type(values).__name__}") from None
    if n > MAX_STEPS:
        raise LimitError(f"{where}{name} has {n:,} entries; at most {MAX_STEPS:,} are accepted")
    try:
        array = np.asarray(values)
    except (TypeError, ValueError, OverflowError):
        array = None
    if array is None or array.dtype.kind not in "iuf":  # not bool, complex, strings or objects
        raise ForecastError(f"{where}{name} must be a 1-D sequence of real numbers")
    array = array.astype(np.float64, copy=False)
    if array.ndim != 1:
        raise ForecastError(f"{where}{name} must be a 1-D array; got {array.ndim} dimensions")
    return array


@dataclass(frozen=True, eq=False)
class Curve:
    """``losses[j]`` was measured at ``steps[j]``; ``lrs[i]`` is the LR used at optimizer step i,
    for every step from 0 up to at least the last measured one."""

    steps: np.ndarray
    losses: np.ndarray
    lrs: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ForecastError(f"a curve's name must be a string; got {type(self.name).__name__}")
        label = f"curve {self.name!r}: " if self.name else ""
        steps = as_vector(self.steps, "steps", label)
        losses = as_vector(self.losses, "losses", label)
        lrs = as_vector(self.lrs, "lrs", label)
        if len(steps) == 0:
            raise ForecastError(f"{label}no measurements (steps is empty)")
        if len(steps) != len(losses):
            raise ForecastError(f"{label}steps has {len(steps)} entries but losses has {len(losses)}")
        whole = np.isfinite(steps) & (steps >= 0) & (steps == np.round(steps))
        if not whole.all():
            bad = int(np.argmin(whole))
            raise ForecastError(f"{label}steps must be whole numbers >= 0; got {steps[bad]:g} (entry {bad})")
        if steps.max() >= MAX_STEPS:
            raise LimitError(f"{label}steps go up to {steps.max():,.0f}; curves are limited to {MAX_STEPS:,} steps")
        steps = steps.astype(np.int64)
        if np.any(np.diff(steps) <= 0):
            bad = int(np.argmax(np.diff(steps) <= 0))
            raise ForecastError(f"{label}steps must increase strictly; step {steps[bad + 1]} follows {steps[bad]}")
        if not np.all(np.isfinite(losses)) or np.any(losses <= 0):
            bad = int(np.argmax(~np.isfinite(losses) | (losses <= 0)))
            raise ForecastError(f"{label}losses must be finite and > 0; got {losses[bad]} at step {steps[bad]}")
        if len(lrs) <= steps[-1]:
            raise ForecastError(f"{label}lrs covers steps 0..{len(lrs) - 1} but losses go up to step {steps[-1]}; "
                                "give the LR of every step")
        lrs = lrs[: steps[-1] + 1]
        if not np.all(np.isfinite(lrs)) or np.any(lrs < 0):
            bad = int(np.argmax(~np.isfinite(lrs) | (lrs < 0)))
            raise ForecastError(f"{label}lrs must be finite and >= 0; got {lrs[bad]} at step {bad}")
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "losses", losses)
        object.__setattr__(self, "lrs", lrs)
