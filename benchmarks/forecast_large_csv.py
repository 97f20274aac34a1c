"""Forecasting at its limits (not a test; figures in docs/forecast.md, "Limits and validation").

* reading a ~200 MB step,lr,loss curve (4.8 million rows), then fitting it (a fit uses at
  most 1000 points per curve; the annealing law refuses more than 250,000 steps) and
  ``cadence forecast fit`` on it end to end;
* refusing a curve file above the size limit (a sparse file: refused from ``stat``);
* predicting every step of a 10,000,000-step run (the forecast limit): time and the peak
  of numpy's allocations, traced by tracemalloc, with the LR array and the steps asked for.

Usage: python benchmarks/forecast_large_csv.py [--rows 4800000] [--dir /tmp] [--skip-fit]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from cadence.cli import main as cli
from cadence.errors import LimitError
from cadence.forecast import FittedLaw, fit
from cadence.forecast.io import read_run
from cadence.forecast.limits import MAX_CSV_BYTES, MAX_STEPS
from cadence.schedules import parse

MPL = {"L0": 2.9, "A": 0.45, "alpha": 0.5, "B": 0.4, "C": 1.5, "beta": 0.6, "gamma": 0.4}
ANNEAL = {"L0": 2.9, "A": 0.45, "alpha": 0.5, "C": 0.002, "lam": 0.995}


def write_curve(path: Path, rows: int) -> None:
    """A cosine run logged at every step: losses of the annealing law plus 0.5% noise."""
    lrs = parse("cosine(peak=3e-4, final=3e-5)").values(rows)
    losses = FittedLaw("annealing", ANNEAL, 3e-4).predict(lrs, np.arange(rows))
    losses *= 1 + 0.005 * np.random.default_rng(0).standard_normal(rows)
    with open(path, "w") as f:
        f.write("step,lr,loss\n")
        for a in range(0, rows, 500_000):
            b = min(rows, a + 500_000)
            f.write("".join(f"{i},{lr!r},{loss!r}\n" for i, lr, loss in
                            zip(range(a, b), lrs[a:b].tolist(), losses[a:b].tolist())))


def timed(label: str, fn):
    """``fn()``, printing its wall-clock and CPU time (the CPU time varies less on a shared machine)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    print(f"{label}: {time.perf_counter() - t0:.2f} s ({time.process_time() - c0:.2f} s CPU)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4_800_000)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--skip-fit", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        path = tmp / "big.csv"
        timed(f"write {args.rows:,} rows", lambda: write_curve(path, args.rows))
        print(f"  file: {path.stat().st_size / 1e6:.0f} MB")
        curve = timed("read_run", lambda: read_run(path))
        t0 = time.perf_counter()
        try:
            fit(curve, law="annealing")
        except LimitError as e:
            print(f"fit annealing: refused in {time.perf_counter() - t0:.3f} s ({e})")
        if not args.skip_fit:
            fitted = timed(f"fit multipower (1 curve, {len(curve.steps):,} points)", lambda: fit(curve, law="multipower"))
            print(f"  fitted on {fitted.report['points']['big'][0]:,} points; PredE over all "
                  f"{100 * fitted.report['curves']['big']['pred_e']:.3f}% (the data have 0.5% noise)")
            def quiet_cli():
                with contextlib.redirect_stdout(io.StringIO()):
                    return cli(["forecast", "fit", str(path), "-o", str(tmp / "law.json")])

            code = timed("cadence forecast fit (multipower: read, fit, score, write)", quiet_cli)
            print(f"  exit status {code}")
        path.unlink()

        sparse = tmp / "huge.csv"
        with open(sparse, "wb") as f:
            f.truncate(MAX_CSV_BYTES + 1)
        t0 = time.perf_counter()
        try:
            read_run(sparse)
        except LimitError as e:
            print(f"refuse a {(MAX_CSV_BYTES + 1) / 2**30:.2f} GiB file: {1000 * (time.perf_counter() - t0):.2f} ms ({e})")
        os.unlink(sparse)

    for spec in ("cosine(peak=3e-4, final=3e-5, warmup=1000)", "wsd(peak=3e-4, warmup=1000, decay='20%')"):
        lrs = parse(spec).values(MAX_STEPS)
        for name, params in (("multipower", MPL), ("annealing", ANNEAL)):
            law = FittedLaw(name, params, 3e-4)
            tracemalloc.start()
            steps = np.arange(1, MAX_STEPS)
            t0 = time.perf_counter()
            pred = law.predict(lrs, steps)
            seconds = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1] + lrs.nbytes
            tracemalloc.stop()
            del pred, steps
            print(f"predict {MAX_STEPS:,} steps, {name:10s} {spec}: {seconds:.2f} s, peak {peak / 2**20:.0f} MiB "
                  "(LR array and steps included)")


if __name__ == "__main__":
    main()
