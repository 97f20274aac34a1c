"""What every controller shares: a schedule that keeps state.

A controller is a :class:`~cadence.schedules.Schedule` with ``stateful = True``. It may wrap
a schedule or another controller (its ``schedule``), whose state it keeps under ``"inner"``
in its own. Its state is plain data (numbers, strings, lists, dicts, None): what a
checkpoint saves, and all a controller needs to give the same values after a resume.

Outside a plan (``cadence schedule``, ``values()``) a controller shows how it starts:
its value before any observation, so a preview of ``plateau(cosine(...))`` is the cosine.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from cadence.schedules.base import Schedule

__all__ = ["Controller", "VectorController"]


class Controller(Schedule):
    stateful = True
    needs_total = False

    def __init__(self, schedule: Schedule | None = None, **params: Any) -> None:
        super().__init__(**({"schedule": schedule} if schedule is not None else {}), **params)
        self.schedule = None if schedule is None else self._schedule("schedule", schedule)
        if self.schedule is not None:
            self.needs_total = self.schedule.needs_total
            self.monitors = tuple(self.schedule.monitors)
            self.inputs = tuple(self.schedule.inputs)
            self.diagnostic_names = tuple(self.schedule.diagnostic_names)

    def _watch(self, monitor: str | None = None, channel: str | None = None) -> None:
        """Add this controller's own signal and channel to those of what it wraps."""
        if monitor is not None and monitor not in self.monitors:
            self.monitors = (*self.monitors, monitor)
        if channel is not None and channel not in self.inputs:
            self.inputs = (*self.inputs, channel)

    # -- the wrapped schedule ---------------------------------------------------------------
    def _check(self, ctx) -> None:
        if self.schedule is not None:
            self.schedule._validate(ctx)

    def _evaluate(self, t, ctx):
        """The preview: the value before any observation."""
        return self.schedule._evaluate(t, ctx)

    def preview(self, t: np.ndarray, ctx, inputs: dict) -> np.ndarray:
        """Values at positions ``t`` before any observation; ``inputs`` holds other channels'
        arrays at the same positions (a plan's preview)."""
        if self.schedule is not None and self.schedule.stateful:
            return self.schedule.preview(t, ctx, inputs)
        return self.evaluate(t, ctx)

    def diagnose(self, state) -> dict:
        """What the wrapped controller reports (a controller adds its own)."""
        inner = self.schedule
        return inner.diagnose(state["inner"]) if inner is not None and inner.diagnostic_names else {}

    def inner_init(self) -> Any:
        return None if self.schedule is None else self.schedule.init()

    def inner_update(self, state: dict, clock, signals: dict) -> Any:
        return None if self.schedule is None else self.schedule.update(state["inner"], clock, signals)

    def inner_value(self, state: dict, clock, inputs) -> float:
        return self.schedule.value(state["inner"], clock, inputs)


def finite(value: Any) -> float | None:
    """A signal's value as a float, or None when it is missing or not a finite number."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    try:
        value = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return value if np.isfinite(value) else None


class VectorController(Controller):
    """A controller whose value is a weight per key: the ``mixture`` channel's weight per domain
    (keys bound by the plan from the run's domains), or a curriculum's weight per difficulty bucket.

    The plan calls :meth:`bind_keys` once, before :meth:`init`; :meth:`value` returns
    ``{key: weight}`` (weights >= 0 summing to 1) and the plan shows it as ``<channel>/<key>``
    values. A vector controller reads signals named ``<signal>/<key>`` (``train_loss/code``);
    it lists them in ``monitors`` once its keys are bound. ``probe_every`` (steps, or None)
    asks the loop for ``probe_loss/<key>`` signals on a small held-out probe at that cadence.
    """

    vector = True
    drives = "mixture"  # the channel a plan lets it drive ("curriculum": a bandit over difficulty buckets)
    probe_every: "int | None" = None

    def __init__(self, schedule: Schedule | None = None, **params: Any) -> None:
        super().__init__(schedule, **params)
        self.keys: "tuple[str, ...] | None" = None

    def bind_keys(self, keys) -> None:
        """Bind the names this controller weighs (the run's domains); at least two, distinct strings."""
        keys = tuple(keys)
        if len(keys) < 2 or len(set(keys)) != len(keys) or not all(isinstance(k, str) and k for k in keys):
            from cadence.errors import ScheduleError

            raise ScheduleError(f"{self.name}: needs two or more distinct names to weigh; got {list(keys)[:8]}")
        self.keys = keys

    def _evaluate(self, t, ctx):  # a vector has no one number per position: preview() gives one array per key
        return np.zeros_like(np.asarray(t, dtype=np.float64))

    def preview(self, t: np.ndarray, ctx, inputs: dict) -> "dict[str, np.ndarray]":
        """Each key's weight at positions ``t`` before any observation (the initial weights, held)."""
        state = self.init()
        first = self.start_value(state)
        return {k: np.full(np.shape(t), first[k], dtype=np.float64) for k in self.keys}

    def start_value(self, state) -> "dict[str, float]":
        """The weights before any observation (what :meth:`preview` holds); by default uniform."""
        return {k: 1.0 / len(self.keys) for k in self.keys}

    @abc.abstractmethod
    def value(self, state, clock, inputs=None) -> "dict[str, float]":
        """``{key: weight}`` for the step about to run at ``clock``: weights >= 0 that sum to 1."""
