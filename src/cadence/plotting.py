"""Figures of schedules (matplotlib, no display needed). Files are written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cadence._atomic import atomic_write, refuse_existing
from cadence.errors import CadenceError
from cadence.schedules import Schedule, parse
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


def _ready(path: "str | Path", overwrite: bool) -> Path:
    path = refuse_existing(path, overwrite)
    if path.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise CadenceError(f"cannot write a figure to {path}: use a .png, .pdf or .svg file name")
    if not path.parent.exists():
        raise CadenceError(f"cannot write {path}: folder {path.parent} does not exist")
    return path


def _save(fig, path: Path) -> None:
    fmt = path.suffix.lstrip(".").lower()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format=fmt))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_schedule(schedule: "Schedule | str", total: int, path: "str | Path", *, rates: Rates | None = None,
                  unit: Unit = Unit.STEP, overwrite: bool = False, title: str | None = None) -> Path:
    """One schedule over a run, steps on the bottom axis and ``unit`` on the top one."""
    schedule = parse(schedule)
    path = _ready(path, overwrite)
    rates = rates or Rates()
    values = schedule.values(total, rates)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(np.arange(total), values, lw=1.8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("value")
    ax.set_title(title or schedule.spec(), fontsize=8)
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
    path = _ready(path, overwrite)
    plt = _pyplot()
    cols = 4
    rows = -(-len(GALLERY) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.7 * rows), sharex=True)
    steps = np.arange(total)
    for ax, (title, spec) in zip(axes.flat, GALLERY):
        if spec is None:
            for shape in WSD_SHAPES:
                s = parse(f"wsd(peak=1.0, warmup='5%', decay='30%', final={0.01 if shape == 'exp' else 0.0}, shape={shape!r})")
                ax.plot(steps, s.values(total), lw=1.4, label=shape)
            ax.legend(fontsize=7, loc="lower left")
        else:
            ax.plot(steps, parse(spec).values(total), lw=1.6)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    for ax in list(axes.flat)[len(GALLERY):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("step")
    fig.suptitle(f"cadence schedule families ({total}-step run)", fontsize=13)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path
