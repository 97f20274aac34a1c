"""``cadence refine RUN``: the refined LR schedule of a finished run, as a piecewise spec.

stdout gets the spec and nothing else, so ``cadence run --lr "$(cadence refine RUN)"``
works; the summary and the names of written files go to stderr.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from cadence.cli import common
from cadence.errors import CadenceError

EXAMPLES = """examples:
  cadence refine runs/digits-linear
  cadence refine runs/digits-linear --warmup 30 --plot refined.png --csv refined.csv
  cadence run digits --lr "$(cadence refine runs/digits-linear)" --steps 600 --out runs/digits-refined
"""


def register(sub) -> None:
    p = sub.add_parser("refine", help="the LR schedule a finished run's gradient norms call for "
                                      "(Defazio et al. 2023), printed as a piecewise spec",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="a complete cadence run folder (metrics.csv with grad_norm and lr)")
    p.add_argument("--peak", type=common.positive_float, metavar="LR",
                   help="largest LR of the refined schedule (default: the run's largest logged LR)")
    p.add_argument("--warmup", type=int, default=0, metavar="N",
                   help="replace the first N steps by a linear ramp to the refined LR at step N (default 0)")
    p.add_argument("--points", type=int, default=64, metavar="N", help="knots of the printed spec (default 64)")
    p.add_argument("--filter-width", type=int, metavar="N",
                   help="median-filter width in steps, odd (default: 10%% of the run; 1: no smoothing)")
    p.add_argument("--plot", metavar="PATH", help="draw the logged LR, the gradient norms and the refined schedule")
    p.add_argument("--csv", metavar="PATH", help="write step,grad_norm,smoothed,lr for every step")
    p.add_argument("--overwrite", action="store_true", help="replace existing --plot/--csv files")
    p.set_defaults(handler=_cmd_refine)


def _shown(path) -> str:
    return str(path).encode("utf-8", "backslashreplace").decode("utf-8")


def _check_csv(path: str, overwrite: bool):
    from cadence._atomic import refuse_existing

    if "\x00" in path:
        raise CadenceError("--csv: a file name cannot contain a NUL byte")
    try:
        target = refuse_existing(path, overwrite)
        if target.is_dir():
            raise CadenceError(f"--csv: {_shown(target)} is a folder; give a file name")
        if not target.parent.is_dir():
            raise CadenceError(f"--csv: cannot write {_shown(target)}: folder {_shown(target.parent)} does not exist")
    except OSError as e:
        raise CadenceError(f"--csv: cannot write {_shown(path)[:200]}: {e.strerror or e}") from None
    return target


def _cmd_refine(args) -> None:
    from cadence.forecast.refine import refine_run
    from cadence.plotting import _ready

    plot = _ready(args.plot, args.overwrite) if args.plot else None  # refuse before any work
    csv = _check_csv(args.csv, args.overwrite) if args.csv else None
    r = refine_run(args.run, peak=args.peak, warmup=args.warmup, filter_width=args.filter_width, points=args.points)
    rule = "1/||g||^2" if r.optimizer == "sgd" else "1/||g||"
    caveat = " (the paper uses l1 norms for Adam)" if r.optimizer == "adamw" else ""
    at = np.unique(np.linspace(0, r.total - 1, 5).round().astype(int))
    _say(f"refined {r.total}-step {r.optimizer} run: w_t = {rule} from the logged {r.norm} gradient norms{caveat}, "
         f"median filter {r.filter_width} steps; peak {r.peak:.4g} at step {int(np.argmax(r.lrs))}; "
         "LR at " + ", ".join(f"{i}: {r.lrs[i]:.3g}" for i in at) + f"; {len(r.steps)} knots")
    if csv is not None:
        _write_csv(r, csv)
    if plot is not None:
        _plot(r, plot, args.run)
    print(r.spec)  # last: a failed write leaves stdout empty, never a spec with a nonzero exit


def _say(text: str) -> None:
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    print(text.encode(encoding, "backslashreplace").decode(encoding, "replace"), file=sys.stderr)


def _write_csv(r, target) -> None:
    from pathlib import Path

    from cadence._atomic import atomic_write

    def write(tmp):
        with open(tmp, "w") as f:
            f.write("step,grad_norm,smoothed,lr\n")
            for a in range(0, r.total, 1 << 16):
                b = min(a + (1 << 16), r.total)
                f.write("".join(f"{i},{g!r},{s!r},{v!r}\n" for i, g, s, v in zip(
                    range(a, b), r.grad_norms[a:b].tolist(), r.smoothed[a:b].tolist(), r.lrs[a:b].tolist())))

    try:
        atomic_write(Path(target), write)
    except OSError as e:
        raise CadenceError(f"--csv: cannot write {_shown(target)}: {e.strerror or e}") from None
    _say(f"wrote {_shown(target)}")


def _plot(r, target, run) -> None:
    from cadence.plotting import _pyplot, _save, _steps
    from cadence.schedules.base import short

    steps, sampled = _steps(r.total)
    i = steps.astype(np.int64)
    plt = _pyplot()
    fig, (g_ax, lr_ax) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=[1, 1])
    g_ax.plot(steps, r.grad_norms[i], lw=0.6, alpha=0.45, color="0.4", label="logged")
    g_ax.plot(steps, r.smoothed[i], lw=1.6, label=f"median filter ({r.filter_width} steps)")
    g_ax.set_ylabel(f"gradient norm ({r.norm})")
    g_ax.legend(fontsize=8)
    g_ax.grid(alpha=0.3)
    g_ax.set_title(short(f"refinement of {_shown(run)} ({r.optimizer}, Defazio et al. 2023)", 120), fontsize=9)
    if r.logged_lrs is not None:
        lr_ax.plot(steps, r.logged_lrs[i], lw=1.4, label="logged LR")
    lr_ax.plot(steps, r.lrs[i], lw=1.6, label="refined LR")
    lr_ax.plot(r.steps, r.values, "o", ms=2.5, color="C1", label=f"spec knots ({len(r.steps)})")
    lr_ax.set_ylabel("LR")
    lr_ax.set_xlabel("step" + (f" (values at {steps.size:,} evenly spaced steps)" if sampled else ""))
    lr_ax.legend(fontsize=8)
    lr_ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        _save(fig, target)
    finally:
        plt.close(fig)
    _say(f"wrote {_shown(target)}")
