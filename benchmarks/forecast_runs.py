"""Train the tiny-lm runs that forecasting is validated on (not a test; used by forecast_validate.py).

Each set is one model size and one run length, trained under eight LR schedules (peak 2e-3,
5% warmup, one seed): constant and cosine are the pilot runs a law is fitted on; the other six
are predicted from their schedules alone. The validation loss is measured every 20 steps.

The runs go to OUT/<set>/ (a cadence bench folder); `--export DIR` then writes one compact
`step,lr,loss` CSV per run (the LR at every step, the validation loss where measured) to
DIR/<set>/<schedule>.csv, the files forecast_validate.py reads. The exported curves of the
runs behind docs/forecast.md are committed under benchmarks/data/forecast/.

Usage: python benchmarks/forecast_runs.py [--sets xs-2000 small-1000 xs-1000] [--out out/forecast-runs]
       [--jobs 2] [--export benchmarks/data/forecast]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from cadence.bench.compare import BenchConfig, run_bench

PEAK = 2e-3
SCHEDULES = {
    "constant": f"constant(value={PEAK}, warmup='5%')",
    "cosine": f"cosine(peak={PEAK}, final=0.0, warmup='5%')",
    "cosine-10": f"cosine(peak={PEAK}, final={PEAK / 10}, warmup='5%')",
    "linear": f"linear(peak={PEAK}, final=0.0, warmup='5%')",
    "wsd-1sqrt-20": f"wsd(peak={PEAK}, warmup='5%', decay='20%', final=0.0, shape='1-sqrt')",
    "wsd-linear-10": f"wsd(peak={PEAK}, warmup='5%', decay='10%', final=0.0, shape='linear')",
    "multistep": f"multistep(peak={PEAK}, milestones=['50%', '80%'], factor=0.3, warmup='5%')",
    "rex": f"rex(peak={PEAK}, final=0.0, warmup='5%')",
}
SETS = {  # name: (tiny-lm size, steps)
    "xs-2000": ("xs", 2000),
    "small-1000": ("small", 1000),
    "xs-1000": ("xs", 1000),
    "small-2000": ("small", 2000),
}
EVAL_EVERY = 20


def train(name: str, out: Path, jobs: int) -> Path:
    size, steps = SETS[name]
    cfg = BenchConfig(workload="tiny-lm", candidates=dict(SCHEDULES), steps=steps, seeds=1, size=size,
                      eval_every=EVAL_EVERY)
    run_bench(cfg, out / name, jobs=jobs, progress=False)
    return out / name


def export(name: str, out: Path, dest: Path) -> None:
    """One `step,lr,loss` CSV per schedule: every step's LR, the validation loss where measured."""
    (dest / name).mkdir(parents=True, exist_ok=True)
    for schedule in SCHEDULES:
        src = out / name / "runs" / schedule / "seed-0" / "metrics.csv"
        with open(src, newline="") as f:
            rows = list(csv.DictReader(f))
        tmp = dest / name / f".{schedule}.csv.tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["step", "lr", "loss"])
            for r in rows:
                w.writerow([r["step"], r["lr"], r.get("val_loss", "")])
        tmp.replace(dest / name / f"{schedule}.csv")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["xs-2000", "small-1000", "xs-1000"], choices=sorted(SETS))
    ap.add_argument("--out", default="out/forecast-runs")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--export", default=None, help="write compact curves to DIR/<set>/<schedule>.csv")
    ap.add_argument("--no-train", action="store_true", help="only export runs already trained")
    args = ap.parse_args()
    out = Path(args.out)
    for name in args.sets:
        if not args.no_train:
            print(f"training {name} ...", flush=True)
            train(name, out, args.jobs)
        if args.export:
            export(name, out, Path(args.export))
            print(f"exported {name} to {args.export}/{name}", flush=True)


if __name__ == "__main__":
    main()
