"""The schedule comparisons behind docs/results.md (not a test).

Three questions from the literature, asked of cadence's own workloads at one shared peak
LR and warmup (each plan decays to 0 unless its name says otherwise):

* Defazio et al. 2023: does linear decay match or beat cosine?
* Hägele et al. 2024: does WSD with a 20% 1-sqrt cooldown match cosine?
* Chen et al. 2022: does REX beat linear at a low budget?

Each workload runs at a full budget and at a quarter of it ("low budget"), every plan over
several seeds. Re-running resumes whatever is unfinished.

Usage: python benchmarks/findings.py --out out/findings [--workloads tiny-lm digits] [--seeds 3]
                                     [--device cuda] [--jobs 4]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cadence.bench.compare import BenchConfig, run_bench


def plans(peak: float) -> dict[str, str]:
    return {
        "cosine": f"cosine(peak={peak}, final=0.0, warmup='5%')",
        "cosine-10pct": f"cosine(peak={peak}, final={peak / 10}, warmup='5%')",
        "linear": f"linear(peak={peak}, final=0.0, warmup='5%')",
        "wsd-1sqrt-20": f"wsd(peak={peak}, warmup='5%', decay='20%', final=0.0, shape='1-sqrt')",
        "wsd-linear-20": f"wsd(peak={peak}, warmup='5%', decay='20%', final=0.0, shape='linear')",
        "rex": f"rex(peak={peak}, final=0.0, warmup='5%')",
    }


SETUPS = {
    # workload: (peak LR, full budget in steps, size)
    "tiny-lm": (2e-3, 2000, "small"),
    "digits": (3e-3, 600, "small"),
    "digits-cnn": (3e-3, 600, "small"),
    "logreg": (0.1, 400, "small"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/findings")
    ap.add_argument("--workloads", nargs="+", default=["tiny-lm", "digits"], choices=list(SETUPS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args()
    summary = {}
    for name in args.workloads:
        peak, steps, size = SETUPS[name]
        for label, budget in (("full", steps), ("low", steps // 4)):
            cfg = BenchConfig(workload=name, plans=plans(peak), steps=budget, seeds=args.seeds, size=size,
                              baseline="cosine", device=args.device)
            folder = Path(args.out) / f"{name}-{label}"
            result = run_bench(cfg, folder, jobs=args.jobs, progress=False)
            print(f"\n## {name}, {label} budget ({budget} steps)\n\n{result['table']}\n", flush=True)
            summary[f"{name}-{label}"] = [
                {"plan": r["plan"], "final_val": r["final_val"], "final_train": r["final_train"],
                 "steps_to_target": r["steps_to_target"], "speedup": r["speedup"]} for r in result["rows"]
            ]
    (Path(args.out) / "findings.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
