"""The documented limits of forecasting (docs/forecast.md, "Limits and validation").

Each bounds the memory or time one call can take. An input beyond a limit is refused with
a :class:`cadence.errors.LimitError` that states the limit, never cut silently; below them
work grows linearly with the input (``MAX_FIT_POINTS`` is the one exception that is not a
refusal: a longer curve is thinned for fitting, and the law file records it).
"""

from __future__ import annotations

import math
import numbers
import os
import stat
from pathlib import Path

from cadence.errors import ForecastError, LimitError

__all__ = ["MAX_STEPS", "MAX_OPTIMIZE_STEPS", "MAX_CSV_BYTES", "MAX_HEADER_BYTES", "MAX_LAW_BYTES", "MAX_FIT_POINTS",
           "MAX_ANNEALING_FIT_STEPS", "MAX_COUNT", "PLOT_POINTS", "check_total", "number", "regular_file", "shorten"]

MAX_STEPS = 10_000_000         # steps of a curve or a forecast: the laws hold the whole LR sequence in memory
MAX_OPTIMIZE_STEPS = 100_000   # forecast optimize evaluates the law tens of thousands of times, each O(total)
MAX_CSV_BYTES = 1 << 30        # a curve file (a 10,000,000-row step,lr,loss CSV is about 400 MB)
MAX_HEADER_BYTES = 1 << 16     # the header line of a curve file
MAX_LAW_BYTES = 1 << 24        # a law file (a fitted law is about 1 KB plus 200 bytes per fitted curve)
MAX_FIT_POINTS = 1000          # measurements per curve that a fit uses; a longer curve is thinned evenly in steps
MAX_ANNEALING_FIT_STEPS = 1_000_000  # LR steps of all curves an annealing fit filters at each of its evaluations
# (258,056 steps: 4.2 s for the fit alone on the 2-core machine; docs/forecast.md, Speed)
MAX_COUNT = 1e18               # recommend: parameters, tokens, batch, sequence length
PLOT_POINTS = 4096             # a forecast plot shows a longer curve at this many evenly spaced steps


def check_total(total, field: str = "total", limit: int = MAX_STEPS, what: str = "a forecast") -> int:
    """``total`` as an int in 1..limit; a one-line error naming ``field`` otherwise."""
    if isinstance(total, bool) or not isinstance(total, numbers.Integral):
        if isinstance(total, float) and total.is_integer():
            total = int(total)
        else:
            raise ForecastError(f"the run length must be a whole number of steps; got {shorten(total)}", field=field)
    total = int(total)
    if total < 1:
        raise ForecastError(f"the run length must be at least 1 step; got {total}", field=field)
    if total > limit:
        raise LimitError(f"{what} is limited to {limit:,} steps; got {total:,}", field=field)
    return total


def number(value, name: str, where: str = "") -> float:
    """``value`` as a finite float (int or float, not bool); a one-line error naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ForecastError(f"{where}{name} must be a number; got {shorten(value)}")
    try:
        out = float(value)
    except (OverflowError, ValueError):
        out = math.inf
    if not math.isfinite(out):
        raise ForecastError(f"{where}{name} must be a finite number; got {shorten(value)}")
    return out


def shorten(value) -> str:
    """``repr(value)``, cut to 40 characters: for error messages about arbitrary input."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def regular_file(path, limit: int, what: str = "file") -> tuple[Path, int]:
    """``(Path, size)`` of a readable regular file of at most ``limit`` bytes.

    Checked with ``stat`` before anything opens it: a folder, a FIFO (which would block a
    reader), a device or a missing file gets a one-line ForecastError, a larger file a LimitError.
    """
    try:
        path = Path(path)
        info = os.stat(path)
    except OSError as e:
        raise ForecastError(f"cannot read {path}: {e.strerror or e}") from None
    except (TypeError, ValueError) as e:  # a NUL byte in the name, or not a path at all
        raise ForecastError(f"cannot read {shorten(path)}: {e}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ForecastError(f"cannot read {path}: it is a folder, not a {what}")
    if not stat.S_ISREG(info.st_mode):
        raise ForecastError(f"cannot read {path}: not a regular file")
    if info.st_size > limit:
        raise LimitError(f"{path} has {info.st_size:,} bytes; a {what} is limited to {limit:,}")
    if not os.access(path, os.R_OK):
        raise ForecastError(f"cannot read {path}: permission denied")
    return path, info.st_size
