"""Forecast accuracy on published LLM loss curves (not a test; figures go to docs/forecast.md).

Reference protocol of the data set (its README): fit on cosine_24000, constant_24000 and
wsdcon_9; predict the six other curves from their schedules alone; report R², PredE and
WorstE per test curve and their average. Rows at step 24000 are dropped. Both laws are fitted
with the same code and settings; nothing is tuned to these files.

Usage: python benchmarks/forecast_accuracy.py [DATA_DIR] [--model mpl-25 mpl-100] [--plot DIR]
DATA_DIR defaults to ../shared/data/loss-curves.
"""

from __future__ import annotations

import argparse
import csv
import re
import time
from pathlib import Path

import numpy as np

from cadence.forecast import Curve, FittedLaw, fit

PEAK, WARMUP = 3e-4, 2160
TRAIN = ("cosine_24000", "constant_24000", "wsdcon_9")

# The Multi-Power Law authors' fitted parameters (README of thu-yao-01-luo/MultiPowerLaw,
# "Best Parameters"; LR in raw units). Their code counts the warmup's LR rises as negative
# decrements, so they are evaluated with warmup="count". Used only to check that cadence's
# law code reproduces the published accuracy from the published parameters.
PUBLISHED = {
    "mpl-25": {"L0": 3.040, "A": 0.525, "alpha": 0.508, "B": 363.788, "C": 2.066, "beta": 0.583, "gamma": 0.641},
    "mpl-100": {"L0": 2.651, "A": 0.601, "alpha": 0.453, "B": 437.946, "C": 2.132, "beta": 0.598, "gamma": 0.655},
}


def schedule(name: str) -> np.ndarray:
    """The exact per-step LR of a file, as its README defines it."""
    if m := re.fullmatch(r"(constant|cosine)_(\d+)", name):
        total = int(m[2])
    elif name.startswith("wsdcon_"):
        total = 16000
    else:
        total = 24000
    i = np.arange(total + 1, dtype=np.float64)
    lrs = np.full_like(i, PEAK)
    lrs[:WARMUP] = np.linspace(0, PEAK, WARMUP)
    after = i >= WARMUP
    if name.startswith("cosine_"):
        lrs[after] = 3e-5 + 0.5 * (PEAK - 3e-5) * (1 + np.cos(np.pi * (i[after] - WARMUP) / (total - WARMUP)))
    elif name.startswith("wsdcon_"):
        lrs[i >= 8000] = int(name.split("_")[1]) * 1e-5
    elif name.startswith("wsd_"):
        d = i >= 20000
        lrs[d] = PEAK ** ((24000 - i[d]) / 4000) * 3e-5 ** ((i[d] - 20000) / 4000)
    elif name.startswith("wsdld_"):
        d = i >= 20000
        lrs[d] = PEAK * (1 - (i[d] - 20000) / 4000) + 3e-5 * (i[d] - 20000) / 4000
    return lrs


def read(path: Path) -> Curve:
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(float(r["step"])) != 24000]
    steps = np.array([int(float(r["step"])) for r in rows])
    losses = np.array([float(r["loss"]) for r in rows])
    return Curve(steps=steps, losses=losses, lrs=schedule(path.stem), name=path.stem)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default="../shared/data/loss-curves")
    ap.add_argument("--model", nargs="+", default=["mpl-25", "mpl-100"])
    ap.add_argument("--laws", nargs="+", default=["multipower", "annealing"])
    ap.add_argument("--warmup", nargs="+", choices=["skip", "count"], default=["skip", "count"],
                    help="fit with the warmup's LR rises left out (cadence's default) and/or counted")
    ap.add_argument("--plot", metavar="DIR", help="write one figure per model and law")
    args = ap.parse_args()
    for model in args.model:
        folder = Path(args.data) / model
        if not folder.is_dir():
            raise SystemExit(f"no data folder {folder}; pass the loss-curves folder as the first argument")
        curves = {p.stem: read(p) for p in sorted(folder.glob("*.csv"))}
        train = [curves[n] for n in TRAIN]
        test = [c for n, c in curves.items() if n not in TRAIN]
        if model in PUBLISHED and "multipower" in args.laws:
            published = FittedLaw("multipower", PUBLISHED[model], lr_scale=1.0, warmup="count")
            _show(f"{model} published multipower parameters, evaluated by cadence", published, train, test)
        for law in args.laws:
            for warmup in args.warmup:
                t0 = time.perf_counter()
                fitted = fit(train, law=law, warmup=warmup)
                seconds = time.perf_counter() - t0
                _show(f"{model} {law}, warmup {warmup}: fit {seconds:.1f} s", fitted, train, test)
                if args.plot and warmup == "skip":
                    _plot(fitted, curves, Path(args.plot) / f"{model}-{law}.png", f"{model}, {law} law")


def _show(title: str, law: FittedLaw, train: list[Curve], test: list[Curve]) -> None:
    rows = [(c.name, law.score(c)) for c in test]
    mean = {k: float(np.mean([s[k] for _, s in rows])) for k in ("r2", "pred_e", "worst_e")}
    fit_e = float(np.mean([law.score(c)["pred_e"] for c in train]))
    print(f"\n{title}, params " + ", ".join(f"{k}={v:.4g}" for k, v in law.params.items()))
    print(f"  {'training curves':24s} PredE {100 * fit_e:.3f}%")
    for name, s in rows:
        print(f"  {name:24s} R2 {s['r2']:.4f}  PredE {100 * s['pred_e']:.3f}%  WorstE {100 * s['worst_e']:.3f}%")
    print(f"  {'average':24s} R2 {mean['r2']:.4f}  PredE {100 * mean['pred_e']:.3f}%  WorstE {100 * mean['worst_e']:.3f}%")


def _plot(fitted, curves, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (name, c) in enumerate(sorted(curves.items())):
        color = f"C{i % 10}"
        ax.plot(c.steps, c.losses, ".", ms=2.5, color=color, alpha=0.6)
        ax.plot(c.steps, fitted.predict(c.lrs, c.steps), "-", lw=1.1, color=color,
                label=name + (" (fit)" if name in TRAIN else ""))
    ax.set_xlabel("step")
    ax.set_ylabel("loss (dots: measured, lines: predicted)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
