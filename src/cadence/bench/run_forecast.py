"""A run's forecast: what a fitted loss-curve law predicts at every optimizer step of the run.

``cadence run --forecast law.json`` (``RunConfig.forecast``) logs the law's prediction next
to the real loss in metrics.csv (column ``forecast``) and says the predicted final loss
before the first step. The prediction is made once per run, over the whole horizon, from
the run's own plan (``Plan.preview`` of its ``lr`` channel, through
:func:`cadence.forecast.plans.plan_lrs`): one ``FittedLaw.predict`` call, then a lookup per
step. A resumed run makes the same call on the same LRs, so it logs the same bytes.

run.json records the law's content, not its path (a resume does not need the file): the
keys of a law file (``format``, ``law``, ``params``, ``lr_scale``, ``warmup``, ``report``)
without the cadence version that wrote it. A law is read with :func:`cadence.forecast.load`
(plain JSON, nothing executed) and checked as it checks a file.

Refused with a one-line :class:`ForecastError` (``field="forecast"``): what
:func:`~cadence.forecast.plans.check_plan` refuses (an ``lr`` controller that follows a
signal measured during the run, a batch that changes, any other channel that is not a
constant), an LR that is 0 at every step, and a prediction that is not a finite loss > 0.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np

from cadence.errors import CadenceError, ForecastError, LimitError

__all__ = ["RunForecast", "law_content", "law_of", "forecast_run", "check_forecastable", "MAX_LAW_RECORD_BYTES"]

# The JSON a law takes in run.json (which is limited to 1 MiB in all): a fitted law is about 1 KB plus 200 bytes
# per curve it was fitted on.
MAX_LAW_RECORD_BYTES = 1 << 17
_KEYS = ("format", "law", "params", "lr_scale", "warmup", "report", "members", "cadence")
_WHERE = "the run"


def _field(error: CadenceError) -> CadenceError:
    """The same error, said to be about the run's ``forecast`` (so the CLI can name its flag)."""
    return type(error)(" ".join(str(error).split()), field="forecast")


def law_of(content: dict):
    """The law (a :class:`~cadence.forecast.FittedLaw` or :class:`~cadence.forecast.CombinedLaw`) that recorded
    ``content`` holds, checked as a law file is (:func:`cadence.forecast.fitting.from_dict`)."""
    from cadence.forecast.fitting import LAW_FORMAT, from_dict

    if not isinstance(content, dict):
        raise ForecastError(f"the recorded law must be a JSON object; got {type(content).__name__}", field="forecast")
    unknown = [str(k)[:40] for k in content if k not in _KEYS]
    needed = ("format", "law", "members") if content.get("law") == "combined" else ("format", "law", "params", "lr_scale")
    missing = [k for k in needed if k not in content]
    if unknown or missing:
        said = "; ".join(([f"missing {', '.join(missing)}"] if missing else []) +
                         ([f"unknown {', '.join(unknown)}"] if unknown else []))
        raise ForecastError(f"the recorded law does not hold a law file's keys ({said})", field="forecast")
    if content["format"] != LAW_FORMAT:
        raise ForecastError(f"the recorded law has format {str(content['format'])[:40]!r}, not {LAW_FORMAT!r}",
                            field="forecast")
    try:
        return from_dict(content)
    except CadenceError as e:
        raise ForecastError(f"the recorded law: {' '.join(str(e).split())}", field="forecast") from None


def law_content(value) -> dict:
    """What run.json records of a law: ``value`` is a :class:`~cadence.forecast.FittedLaw`, the path of a law
    file, or that content already (a resumed run's). Plain JSON data, the same for all three."""
    from cadence.forecast import CombinedLaw, FittedLaw, load

    if isinstance(value, (FittedLaw, CombinedLaw)):
        law = value
    elif isinstance(value, (str, os.PathLike)):
        try:
            law = load(value)
        except CadenceError as e:
            raise _field(e) from None
    elif isinstance(value, dict):
        law = law_of(value)
    else:
        raise ForecastError(f"forecast must be a law file's path or a fitted law; got {type(value).__name__}",
                            field="forecast")
    content = {k: v for k, v in law.to_dict().items() if k != "cadence"}  # the version of the reader, not the law
    try:
        text = json.dumps(content, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ForecastError(f"the law's report is not plain JSON data ({e})", field="forecast") from None
    if len(text) > MAX_LAW_RECORD_BYTES:
        raise LimitError(f"the law takes {len(text):,} bytes of JSON; a run records at most {MAX_LAW_RECORD_BYTES:,} "
                         "(its report is too large: fitted on many curves?)", field="forecast")
    return json.loads(text)  # what run.json gives back: a resumed run compares equal


def check_forecastable(plan, content: dict) -> None:
    """Whether the law in ``content`` can forecast ``plan`` at all (cheap: nothing is previewed or predicted)."""
    from cadence.forecast.plans import check_plan

    try:
        check_plan(plan, law_of(content), _WHERE)
    except CadenceError as e:
        raise _field(e) from None


def _printable(text: str, limit: int = 40) -> str:
    text = text if text.isprintable() else ascii(text)[1:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True, eq=False)
class RunForecast:
    """What a law predicts for a run: ``losses[k]`` at optimizer step k (NaN before the first step with an LR > 0,
    where the law has no prediction), from ``lrs[k]``, the run's LR at step k."""

    law: object  # cadence.forecast.FittedLaw
    lrs: np.ndarray
    losses: np.ndarray

    def __post_init__(self) -> None:
        cells = [None if math.isnan(v) else v for v in self.losses.tolist()]
        object.__setattr__(self, "_cells", cells)

    @property
    def steps(self) -> int:
        return int(self.lrs.size)

    @property
    def final(self) -> float:
        """The predicted loss after the run's last step."""
        return float(self.losses[-1])

    def at(self, step: int) -> "float | None":
        """The predicted loss after optimizer step ``step`` (metrics.csv's ``forecast``), None where there is none."""
        cells = self._cells
        return cells[step] if 0 <= step < len(cells) else None

    def summary(self) -> str:
        """One line: the law, the curves it was fitted on, and the predicted final loss."""
        curves = self.law.report.get("curves")
        names = [_printable(str(n)) for n in curves] if isinstance(curves, dict) else []
        if not names:
            fitted = "its fitted curves not recorded"
        else:
            fitted = "fitted on " + ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return (f"forecast: the {self.law.law} law ({fitted}) predicts a final loss of {self.final:.4f} at step "
                f"{self.steps - 1}")

    def extrapolation(self) -> "str | None":
        """One warning when the run's schedule is outside what the law was fitted on (``range_notes``, the rule
        every forecast command uses: its peak, length, LR area and low LRs), else None."""
        notes = self.law.range_notes(self.lrs)
        return "the forecast is an extrapolation: " + "; ".join(notes) if notes else None


def forecast_run(plan, content: dict) -> RunForecast:
    """The law in ``content`` over every optimizer step of ``plan`` (the run's, as built; its clock's position does
    not matter): one prediction for the whole horizon."""
    from cadence.forecast.plans import plan_lrs

    law = law_of(content)
    try:
        lrs = plan_lrs(plan, law, _WHERE)
    except CadenceError as e:
        raise _field(e) from None
    started = np.flatnonzero(lrs > 0)
    if not started.size:
        raise ForecastError(f"{_WHERE}'s LR is 0 at every step: the {law.law} law has no loss to predict",
                            field="forecast")
    first = int(started[0])
    losses = np.full(lrs.size, np.nan)
    try:
        losses[first:] = law.predict(lrs, np.arange(first, lrs.size, dtype=np.int64))
    except CadenceError as e:
        raise _field(e) from None
    bad = ~(losses[first:] > 0)  # predict() refuses what is not finite; a loss is > 0
    if bad.any():
        i = first + int(np.argmax(bad))
        raise ForecastError(f"the {law.law} law predicts a loss of {losses[i]:.4g} at step {i} of {_WHERE}, which no "
                            "loss can be: its parameters do not describe this schedule", field="forecast")
    return RunForecast(law, lrs, losses)
