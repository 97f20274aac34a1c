"""The schedule comparisons behind docs/results.md (not a test).

Three questions from the literature, asked of cadence's own workloads at one shared peak
LR and warmup (each candidate decays to 0 unless its name says otherwise):

* Defazio et al. 2023: does linear decay match or beat cosine?
* Hägele et al. 2024: does WSD with a 20% 1-sqrt cooldown match cosine?
* Chen et al. 2022: does REX beat linear at a low budget?

Each workload runs at a full budget (its horizon in steps) and at a quarter of it ("low
budget"), every candidate over several seeds. Re-running resumes whatever is unfinished.

With ``--peaks``, every candidate in ``--sweep`` is also run at each peak LR (folders
``<workload>-<budget>-sweep``), so each schedule can be compared at its own best LR.

Usage: python benchmarks/findings.py --out out/findings [--workloads tiny-lm digits] [--seeds 3]
                                     [--device cuda] [--jobs 4]
                                     [--peaks 1e-3 2e-3 4e-3 8e-3 --sweep cosine linear wsd-1sqrt-20 rex]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cadence.bench.compare import BenchConfig, run_bench


def candidates(peak: float) -> dict[str, str]:
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
    ap.add_argument("--peaks", type=float, nargs="*", default=[])
    ap.add_argument("--sweep", nargs="*", default=["cosine", "linear", "wsd-1sqrt-20", "rex"])
    ap.add_argument("--sweep-seeds", type=int, default=2)
    ap.add_argument("--skip-main", action="store_true", help="only the LR sweep")
    args = ap.parse_args()
    summary = {}
    if args.peaks:
        for name in args.workloads:
            _, steps, size = SETUPS[name]
            for label, budget in (("full", steps), ("low", steps // 4)):
                swept = {f"{kind}_lr{peak:g}": candidates(peak)[kind] for peak in args.peaks for kind in args.sweep}
                cfg = BenchConfig(workload=name, candidates=swept, steps=budget, seeds=args.sweep_seeds, size=size,
                                  device=args.device)
                result = run_bench(cfg, Path(args.out) / f"{name}-{label}-sweep", jobs=args.jobs, progress=False)
                print(f"\n## {name}, {label} budget (horizon {budget} steps), LR sweep\n\n{result['table']}\n", flush=True)
                summary[f"{name}-{label}-sweep"] = [
                    {"candidate": r["candidate"], "final_val": r["final_val"], "final_train": r["final_train"]}
                    for r in result["rows"]
                ]
    if args.skip_main:
        _write(args.out, summary)
        return
    for name in args.workloads:
        peak, steps, size = SETUPS[name]
        for label, budget in (("full", steps), ("low", steps // 4)):
            cfg = BenchConfig(workload=name, candidates=candidates(peak), steps=budget, seeds=args.seeds, size=size,
                              baseline="cosine", device=args.device)
            folder = Path(args.out) / f"{name}-{label}"
            result = run_bench(cfg, folder, jobs=args.jobs, progress=False)
            print(f"\n## {name}, {label} budget (horizon {budget} steps)\n\n{result['table']}\n", flush=True)
            summary[f"{name}-{label}"] = [
                {"candidate": r["candidate"], "final_val": r["final_val"], "final_train": r["final_train"],
                 "steps_to_target": r["steps_to_target"], "speedup": r["speedup"]} for r in result["rows"]
            ]
    _write(args.out, summary)


def _write(out: str, summary: dict) -> None:
    path = Path(out) / "findings.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    old.update(summary)
    path.write_text(json.dumps(old, indent=2) + "\n")


if __name__ == "__main__":
    main()
