"""Forecasting checked against cadence's own tiny-lm runs (not a test; figures in docs/forecast.md).

1. Train tiny-lm (size small, 2000 steps, peak 2e-3, 5% warmup) under constant, cosine,
   WSD (1-sqrt, 20%) and linear decay, 3 seeds each.
2. Fit each law on the constant and cosine runs only (validation loss from 10% of the run on,
   as the published curves start at 9%; strict=False so a poor fit is reported, not refused).
3. Predict the WSD and linear runs from their schedules: PredE / WorstE against what they measured.
4. Optimise a non-increasing schedule for the same budget and peak with the Multi-Power law,
   train it (3 seeds), and compare predicted with measured final loss for cosine, WSD and it.

Usage: python benchmarks/forecast_tinylm.py --out out/forecast-tinylm [--device cuda] [--jobs 6]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cadence.bench.compare import BenchConfig, run_bench
from cadence.forecast import Curve, fit
from cadence.forecast.io import read_run
from cadence.forecast.optimize import as_spec, optimize_schedule
from cadence.schedules import parse

STEPS, PEAK, WARMUP = 2000, 2e-3, 100
CANDIDATES = {
    "constant": f"constant(value={PEAK}, warmup='5%')",
    "cosine": f"cosine(peak={PEAK}, final=0.0, warmup='5%')",
    "wsd-1sqrt-20": f"wsd(peak={PEAK}, warmup='5%', decay='20%', final=0.0, shape='1-sqrt')",
    "linear": f"linear(peak={PEAK}, final=0.0, warmup='5%')",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/forecast-tinylm")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    out = Path(args.out)
    cfg = BenchConfig(workload="tiny-lm", candidates=CANDIDATES, steps=STEPS, seeds=args.seeds, size="small", device=args.device)
    run_bench(cfg, out / "runs", jobs=args.jobs, progress=False)

    def curves(name):
        out_ = []
        for s in range(args.seeds):
            c = read_run(out / "runs" / "runs" / name / f"seed-{s}")
            keep = c.steps >= STEPS // 10
            out_.append(Curve(c.steps[keep], c.losses[keep], c.lrs, name=f"{name}/seed-{s}"))
        return out_

    result = {"prediction": {}, "optimized": {}}
    laws = {}
    for law in ("multipower", "annealing"):
        fitted = fit(curves("constant") + curves("cosine"), law=law, strict=False)
        laws[law] = fitted
        train = fitted.report["curves"].values()
        result["prediction"][f"{law}/fit"] = {"pred_e": float(np.mean([v["pred_e"] for v in train])),
                                             "worst_e": float(np.max([v["worst_e"] for v in train])),
                                             "params": fitted.params}
        print(f"{law:10s} fit on constant+cosine: PredE {100 * result['prediction'][f'{law}/fit']['pred_e']:.3f}%  "
              f"WorstE {100 * result['prediction'][f'{law}/fit']['worst_e']:.3f}%", flush=True)
        fitted.save(out / f"{law}.json")
        for name in ("wsd-1sqrt-20", "linear"):
            s = [fitted.score(c) for c in curves(name)]
            result["prediction"][f"{law}/{name}"] = {k: float(np.mean([x[k] for x in s])) for k in ("r2", "pred_e", "worst_e")}
            print(f"{law:10s} predicts {name:13s}: PredE {100 * result['prediction'][f'{law}/{name}']['pred_e']:.3f}%  "
                  f"WorstE {100 * result['prediction'][f'{law}/{name}']['worst_e']:.3f}%", flush=True)

    mpl = laws["multipower"]
    lrs, predicted = optimize_schedule(mpl, STEPS, PEAK, WARMUP)
    spec = as_spec(lrs, STEPS, WARMUP)
    cfg2 = BenchConfig(workload="tiny-lm", candidates={"optimized": spec, "cosine": CANDIDATES["cosine"],
                                                       "wsd-1sqrt-20": CANDIDATES["wsd-1sqrt-20"]},
                       steps=STEPS, seeds=args.seeds, size="small", device=args.device, baseline="cosine")
    report = run_bench(cfg2, out / "optimized", jobs=args.jobs, progress=False)
    print(report["table"], flush=True)
    for row in report["rows"]:
        lrs_of = parse(row["spec"]).values(STEPS)
        result["optimized"][row["candidate"]] = {
            "predicted_final": {law: float(f.predict(lrs_of, [STEPS - 1])[0]) for law, f in laws.items()},
            "measured_final_val": row["final_val"],
        }
    result["optimized_spec"] = spec
    (out / "forecast_tinylm.json").write_text(json.dumps(result, indent=2) + "\n")
    for name, r in result["optimized"].items():
        print(f"{name:13s} predicted (mpl) {r['predicted_final']['multipower']:.4f}  (annealing) "
              f"{r['predicted_final']['annealing']:.4f}  measured {r['measured_final_val'][0]:.4f} ± {r['measured_final_val'][1]:.4f}")


if __name__ == "__main__":
    main()
