"""Forecasting speed (not a test; figures in docs/forecast.md).

Fit time of each law on the three training curves of the published data (reference
protocol), and the time to predict a 100,000-step curve (every step) for several schedules.

Usage: python benchmarks/forecast_speed.py [DATA_DIR]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _timing import best_of  # noqa: E402
from forecast_accuracy import TRAIN, read  # noqa: E402

from cadence.forecast import fit  # noqa: E402
from cadence.schedules import parse  # noqa: E402


def main() -> None:
    data = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/loss-curves")
    laws = {}
    for law in ("multipower", "annealing", "combined"):
        for model in ("mpl-25", "mpl-100"):
            train = [read(data / model / f"{n}.csv") for n in TRAIN]
            for intervals in (False, True):
                if law == "combined" and not intervals:
                    continue
                t0 = time.perf_counter()
                laws[law] = fit(train, law=law, intervals=intervals)
                print(f"fit {law:10s} on {model} (3 curves, {sum(len(c.steps) for c in train)} points)"
                      f"{', with intervals' if intervals else ''}: {time.perf_counter() - t0:.2f} s")
    steps = np.arange(1, 100_000)
    for spec in ["cosine(peak=3e-4, final=3e-5, warmup=2000)", "wsd(peak=3e-4, warmup=2000, decay='20%', shape='1-sqrt')",
                 "multistep(peak=3e-4, milestones=['50%', '80%'], warmup=2000)", "cyclic(low=3e-5, peak=3e-4, up=3000)"]:
        lrs = parse(spec).values(100_000)
        for law, fitted in laws.items():
            best = best_of(lambda: fitted.predict(lrs, steps), 3)
            print(f"predict 100k steps, {law:10s} {best * 1000:6.0f} ms  {spec}")
            best = best_of(lambda: fitted.predict_interval(lrs, steps[::100]), 3)
            print(f"predict_interval at 1k of the steps, {law:10s} {best * 1000:6.0f} ms  {spec}")


if __name__ == "__main__":
    main()
