"""Figures of schedules (matplotlib, no display needed). Files are written atomically.

A figure's cost is bounded whatever the run's length: a run of up to ``PLOT_POINTS``
steps is drawn step by step; a longer one from ``PLOT_POINTS`` evenly spaced steps, and
the figure says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cadence._atomic import atomic_write, refuse_existing
from cadence.errors import CadenceError, LimitError
from cadence.schedules import Schedule, parse
from cadence.schedules.base import _short_value, short
from cadence.schedules.limits import MAX_TOTAL_STEPS, PLOT_POINTS
from cadence.time import Rates, Unit

# One example per family for the gallery: (title, spec); positions are fractions, so any --total works.
GALLERY = [
    ("constant + warmup", "constant(value=1.0, warmup='5%')"),
    ("linear", "linear(peak=1.0, final=0.0, warmup='5%')"),
    ("cosine", "cosine(peak=1.0, final=0.1, warmup='5%')"),
    ("sgdr (cosine restarts)", "sgdr(peak=1.0, period='15%', mult=2, final=0.05)"),
    ("step", "step(peak=1.0, every='25%', factor=0.5)"),
    ("multistep", "multistep(peak=1.0, milestones=['50%', '75%'], factor=0.1)"),
    ("exponential", "exponential(peak=1.0, final=0.01, warmup='5%')"),
    ("polynomial (power=2)", "polynomial(peak=1.0, final=0.0, power=2.0, warmup='5%')"),
    ("inverse_sqrt", "inverse_sqrt(peak=1.0, warmup='10%')"),
    ("onecycle", "onecycle(peak=1.0, warmup='30%')"),
    ("cyclic (triangular2)", "cyclic(low=0.1, peak=1.0, up='12.5%', mode='triangular2')"),
    ("wsd (4 cooldown shapes)", None),
    ("rex", "rex(peak=1.0, final=0.0, warmup='5%')"),
    ("power (min(peak, a*n^b))", "power(peak=1.0, a=10.0, b=-0.5, warmup='5%', decay='10%', per='st')"),
    ("infinite", "infinite(peak=1.0, constant=0.4, final=0.0, warmup='5%', cooldown='20%', anneal='10%')"),
    ("decay_from + rewarm", "rewarm(decay_from(constant(value=1.0), at='30%', duration='20%', final=0.3, shape='1-sqrt'), "
                            "cosine(peak=0.8, final=0.0), at='60%', warmup='5%')"),
]
WSD_SHAPES = ("linear", "cosine", "1-sqrt", "exp")


def _wsd_panel() -> list[Schedule]:
    return [parse(f"wsd(peak=1.0, warmup='5%', decay='30%', final={0.01 if shape == 'exp' else 0.0}, shape={shape!r})")
            for shape in WSD_SHAPES]


def _ready(path: "str | Path", overwrite: bool) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise CadenceError(f"a figure path must be a file name; got {_short_value(path)}")
    try:
        os.fsencode(path)
    except UnicodeEncodeError:
        raise CadenceError(f"cannot write a figure to {_short_value(os.fspath(path))}: the name is not valid text") from None
    if "\0" in os.fspath(path):
        raise CadenceError(f"cannot write a figure to {_short_value(os.fspath(path))}: the name holds a NUL character")
    path = Path(path)
    shown = short(str(path), 120)
    if path.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise CadenceError(f"cannot write a figure to {shown}: use a .png, .pdf or .svg file name")
    try:  # stat() raises for a name too long, a folder we may not read, ...
        if path.is_dir():
            raise CadenceError(f"cannot write a figure to {shown}: it is a folder")
        path = refuse_existing(path, overwrite)
        if not path.parent.is_dir():
            raise CadenceError(f"cannot write {shown}: folder {short(str(path.parent), 120)} does not exist")
    except OSError as e:
        raise CadenceError(f"cannot write a figure to {shown}: {e.strerror or e}") from None
    return path


def _save(fig, path: Path, tight: bool = True) -> None:
    """Write atomically. ``tight=False`` for a figure laid out by hand: the "tight" bounding
    box draws the whole figure twice."""
    fmt = path.suffix.lstrip(".").lower()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight" if tight else None, format=fmt))
    except OSError as e:
        raise CadenceError(f"cannot write {short(str(path), 120)}: {e.strerror or e}") from None


def _total(total) -> int:
    if isinstance(total, bool) or not isinstance(total, (int, np.integer)) or total < 1:
        raise CadenceError(f"total must be a positive int; got {_short_value(total)}", field="total")
    if total > MAX_TOTAL_STEPS:
        raise LimitError(f"total is {_short_value(total)} steps; at most {MAX_TOTAL_STEPS} (2**53) are counted exactly",
                         field="total")
    return int(total)


def _steps(total: int) -> tuple[np.ndarray, bool]:
    """The steps a figure of a ``total``-step run is drawn from, and whether they are a sample."""
    if total <= PLOT_POINTS:
        return np.arange(total, dtype=np.float64), False
    return np.unique(np.round(np.linspace(0, total - 1, PLOT_POINTS))), True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_schedule(schedule: "Schedule | str", total: int, path: "str | Path", *, rates: Rates | None = None,
                  unit: Unit = Unit.STEP, overwrite: bool = False, title: str | None = None) -> Path:
    """One schedule over a run, steps on the bottom axis and ``unit`` on the top one."""
    schedule = parse(schedule)
    if not isinstance(unit, Unit):
        raise CadenceError(f"unit must be a cadence.time.Unit; got {_short_value(unit)}")
    rates = rates or Rates()
    total = _total(total)
    ctx = schedule.bind(total, rates)
    if unit not in (Unit.STEP, Unit.FRACTION):
        rates.per_step(unit, what="--unit")
    path = _ready(path, overwrite)
    steps, sampled = _steps(total)
    values = schedule.evaluate(steps, ctx)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(steps, values, lw=1.8)
    ax.set_xlabel("optimizer step" + (f" (values at {steps.size:,} evenly spaced steps of {total:,})" if sampled else ""))
    ax.set_ylabel("value")
    ax.set_title(short(title or schedule.spec(), 160), fontsize=8)
    ax.grid(alpha=0.3)
    if unit is Unit.FRACTION:
        top = ax.secondary_xaxis("top", functions=(lambda s: s / total, lambda f: f * total))
        top.set_xlabel("fraction of the run")
    elif unit is not Unit.STEP:
        k = rates.per_step(unit, what="--unit")
        top = ax.secondary_xaxis("top", functions=(lambda s: s * k, lambda x: x / k))
        top.set_xlabel({Unit.SAMPLE: "samples", Unit.TOKEN: "tokens", Unit.EPOCH: "epochs"}[unit])
    _save(fig, path)
    plt.close(fig)
    return path


def gallery(path: "str | Path", total: int = 1000, overwrite: bool = False) -> Path:
    """A grid with one panel per family (and two combinators), each over ``total`` steps."""
    total = _total(total)
    for _, spec in GALLERY:  # every panel must fit the run before anything is drawn
        for s in [parse(spec)] if spec else _wsd_panel():
            s.bind(total)
    path = _ready(path, overwrite)
    plt = _pyplot()
    cols = 4
    rows = -(-len(GALLERY) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.7 * rows), sharex=True)
    steps, sampled = _steps(total)
    for ax, (title, spec) in zip(axes.flat, GALLERY):
        if spec is None:
            for shape, s in zip(WSD_SHAPES, _wsd_panel()):
                ax.plot(steps, s(steps, total), lw=1.4, label=shape)
            ax.legend(fontsize=7, loc="lower left")
        else:
            ax.plot(steps, parse(spec)(steps, total), lw=1.6)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    for ax in list(axes.flat)[len(GALLERY):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("step")
    note = f", drawn from {steps.size:,} evenly spaced steps" if sampled else ""
    fig.suptitle(f"cadence schedule families ({total}-step run{note})", fontsize=13)
    # Fixed margins instead of tight_layout(), which draws the whole grid once more to measure it.
    fig.subplots_adjust(left=0.03, right=0.99, bottom=0.05, top=0.93, wspace=0.15, hspace=0.3)
    _save(fig, path, tight=False)
    plt.close(fig)
    return path


def plot_plan(preview: "dict[str, np.ndarray]", channels: "list[str]", unit: str, path: "str | Path",
              overwrite: bool = False) -> Path:
    """One panel per channel of a plan's preview, against the plan's clock (``step``, ``sample`` or ``token``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = _ready(path, overwrite)
    x = preview[{"step": "step", "sample": "samples", "token": "tokens"}[unit]]
    n = x.size
    pick = np.unique(np.linspace(0, n - 1, min(n, PLOT_POINTS)).round().astype(np.int64)) if n else np.arange(0)
    fig, axes = plt.subplots(len(channels), 1, figsize=(7, 1.9 * len(channels) + 0.6), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], channels):
        ax.plot(x[pick], preview[name][pick], lw=1.4, drawstyle="steps-post" if name == "batch" else "default")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel(f"{unit}s" + (f" ({pick.size:,} of {n:,} steps drawn)" if pick.size < n else ""))
    axes[0, 0].set_title("plan preview (controllers as they start, before any observation)", fontsize=10)
    _save(fig, path)
    plt.close(fig)
    return path
