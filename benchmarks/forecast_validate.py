"""Forecasting validated on runs the fitting code was not tuned on (not a test; table in docs/forecast.md).

One command for the whole table of docs/forecast.md, "Validation":

* **Published curves** (`../shared/data/loss-curves`, 25M and 100M; pass the folder as
  `--shared`): three protocols per size.
  - `paper`: fit cosine_24000, constant_24000 and wsdcon_9; predict the six others (the data
    set's reference protocol);
  - `pilot`: fit constant_24000 and cosine_24000 only; predict the seven others;
  - `loso` (leave one schedule out): for each of the six non-pilot schedules, fit on every
    other schedule and predict it.
* **cadence's own tiny-lm runs** (`benchmarks/data/forecast/<set>/`, trained by
  `benchmarks/forecast_runs.py`: two model sizes, two lengths, eight schedules each): fit the
  constant and cosine runs from 15% of the run on; predict the six others (`pilot`), and
  leave one schedule out (`loso`, from 15% too).

Each method is fitted by cadence's public API exactly as a user would call it (`fit`, then
`predict_interval`), with one procedure for every data set: nothing is set per size or per
set. Per method and protocol: mean PredE (mean |pred - loss| / loss over a held-out curve's
measured points, averaged over curves), WorstE (the largest such error on a curve, averaged
over curves, as the published table does; the largest over all curves in brackets), and the
coverage of the nominal 90% interval (the share of held-out measured points inside it, and of
final losses).

Usage: python benchmarks/forecast_validate.py [--shared ../shared/data/loss-curves]
       [--sets benchmarks/data/forecast] [--jobs 2] [--json out.json] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forecast_accuracy import read as read_published  # noqa: E402

from cadence.forecast import CombinedLaw, Curve, fit  # noqa: E402
from cadence.forecast.io import read_run  # noqa: E402

PILOT_PUBLISHED = ("constant_24000", "cosine_24000")
PAPER = ("cosine_24000", "constant_24000", "wsdcon_9")
PILOT_TINY = ("constant", "cosine")
FROM = 0.15  # tiny-lm: fit from this share of the run on
LAWS = ("multipower", "annealing")
# The published table (Luo et al. 2025, paper protocol): mean PredE and mean WorstE.
PUBLISHED = {"mpl-25": (0.110, 0.409), "mpl-100": (0.142, 0.583)}


def load_published(folder: Path) -> dict[str, Curve]:
    return {p.stem: read_published(p) for p in sorted(folder.glob("*.csv"))}


def load_tiny(folder: Path) -> dict[str, Curve]:
    curves = {}
    for p in sorted(folder.glob("*.csv")):
        c = read_run(p)
        curves[p.stem] = Curve(c.steps, c.losses, c.lrs, name=p.stem)
    return curves


def fitted_part(curve: Curve, start: int) -> Curve:
    keep = curve.steps >= start
    return Curve(curve.steps[keep], curve.losses[keep], curve.lrs[: curve.steps[keep][-1] + 1], name=curve.name)


def splits(kind: str, curves: dict[str, Curve], protocol: str) -> list[tuple[list[str], list[str]]]:
    """(training curve names, held-out names) for each fit of a protocol."""
    names = sorted(curves)
    pilots = PILOT_PUBLISHED if kind == "published" else PILOT_TINY
    if protocol == "paper":
        return [(list(PAPER), [n for n in names if n not in PAPER])]
    if protocol == "pilot":
        return [(list(pilots), [n for n in names if n not in pilots])]
    if protocol == "loso":
        return [([n for n in names if n != held], [held]) for held in names if held not in pilots]
    raise ValueError(protocol)


def run_split(job: tuple) -> dict:
    """Fit every law on one split and score every held-out curve (runs in a worker process)."""
    kind, folder, protocol, train, test, start_share = job
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    curves = load_published(Path(folder)) if kind == "published" else load_tiny(Path(folder))
    def start_of(c: Curve) -> int:
        return int(round(start_share * (len(c.lrs)))) if start_share else 0
    train_curves = [fitted_part(curves[n], start_of(curves[n])) for n in train]
    out = {"train": train, "test": test, "seconds": {}, "scores": {}}
    fits = {}
    for law in LAWS:
        for warmup in ("skip", "count"):
            t0 = time.perf_counter()
            fits[law, warmup] = fit(train_curves, law=law, strict=False, warmup=warmup)
            out["seconds"][f"{law}/{warmup}"] = time.perf_counter() - t0
    # each law alone (as fit(..., law=...) gives it), and what fit(..., law="combined") returns, without
    # fitting the same laws a second time
    methods = {law: fits[law, "skip"] for law in LAWS}
    methods["combined"] = CombinedLaw([fits[law, w] for law in LAWS for w in ("skip", "count")])
    for name, law in methods.items():
        rows = {}
        for n in test:
            c = curves[n]
            keep = c.steps >= start_of(c) if kind != "published" else np.ones(len(c.steps), bool)
            steps, losses = c.steps[keep], c.losses[keep]
            pred, low, high = law.predict_interval(c.lrs, steps, level=0.9)
            rel = np.abs(pred - losses) / losses
            inside = (losses >= low) & (losses <= high)
            rows[n] = {"pred_e": float(rel.mean()), "worst_e": float(rel.max()), "covered": float(inside.mean()),
                       "final_covered": bool(inside[-1]), "points": int(len(steps)),
                       "width": float(np.mean((high - low) / pred)), "final": [float(losses[-1]), float(pred[-1]),
                                                                              float(low[-1]), float(high[-1])]}
        out["scores"][name] = rows
    return out


# Live cooldown checks: a pilot law fitted on a shorter set's constant and cosine runs (from 15% of
# the run), asked by forecast_live about the longer set's constant run at the step where a WSD run of
# the longer set starts its cooldown; compared with that WSD run's final loss.
LIVE = [("xs-1000", "xs-2000", "wsd-1sqrt-20", 400, "1-sqrt"), ("xs-1000", "xs-2000", "wsd-linear-10", 200, "linear"),
        ("small-1000", "small-2000", "wsd-1sqrt-20", 400, "1-sqrt"),
        ("small-1000", "small-2000", "wsd-linear-10", 200, "linear")]


def live_checks(sets: Path) -> list[dict]:
    from cadence.forecast.live import forecast_live

    rows = []
    for pilot, target, wsd, cooldown, shape in LIVE:
        if not (sets / pilot).is_dir() or not (sets / target).is_dir():
            continue
        curves = load_tiny(sets / pilot)
        law = fit([fitted_part(curves[n], int(FROM * len(curves[n].lrs))) for n in PILOT_TINY], law="combined",
                  strict=False)
        long = load_tiny(sets / target)
        start = len(long[wsd].lrs) - cooldown
        run = long["constant"]
        seen = run.steps < start
        observed = Curve(run.steps[seen], run.losses[seen], run.lrs[:start], name="constant")
        t0 = time.perf_counter()
        result = forecast_live(run.lrs[:start], law, cooldown, shape=shape, observed=observed)
        seconds = time.perf_counter() - t0
        real = float(long[wsd].losses[-1])
        p = result.now
        rows.append({"pilot": pilot, "run": target, "cooldown": f"{wsd}: {cooldown} steps {shape} from step {start}",
                     "real": real, "predicted": p.loss, "low": p.low, "high": p.high, "error": p.loss / real - 1,
                     "held": bool(p.low <= real <= p.high), "seconds": seconds})
    return rows


def summarise(results: list[dict]) -> dict:
    table = {}
    for method in results[0]["scores"]:
        rows = [r for res in results for r in res["scores"][method].values()]
        points = sum(r["points"] for r in rows)
        table[method] = {
            "curves": len(rows),
            "pred_e": float(np.mean([r["pred_e"] for r in rows])),
            "worst_e": float(np.mean([r["worst_e"] for r in rows])),
            "worst_max": float(np.max([r["worst_e"] for r in rows])),
            "coverage": float(sum(r["covered"] * r["points"] for r in rows) / points),
            "final_coverage": float(np.mean([r["final_covered"] for r in rows])),
            "width": float(np.mean([r["width"] for r in rows])),
        }
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default="../shared/data/loss-curves", help="the published curves (skipped if missing)")
    ap.add_argument("--sets", default=str(Path(__file__).resolve().parent / "data" / "forecast"),
                    help="folder of tiny-lm sets (one folder of step,lr,loss CSVs per set)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", nargs="+", help="data sets to run (e.g. mpl-25 xs-2000)")
    ap.add_argument("--protocols", nargs="+", default=["paper", "pilot", "loso"])
    ap.add_argument("--json", help="write every score to this file")
    ap.add_argument("--markdown", action="store_true", help="also print the table as markdown (docs/forecast.md)")
    ap.add_argument("--live", action="store_true",
                    help="also check forecast live on real WSD cooldowns (pilot laws from the 1000-step sets)")
    args = ap.parse_args()

    data = []  # (name, kind, folder)
    shared = Path(args.shared)
    for model in ("mpl-25", "mpl-100"):
        if (shared / model).is_dir():
            data.append((model, "published", shared / model))
    if not data:
        print(f"no published curves in {shared}: skipping them (pass --shared DIR)", file=sys.stderr)
    sets = Path(args.sets)
    for folder in sorted(p for p in sets.iterdir() if p.is_dir()) if sets.is_dir() else []:
        data.append((folder.name, "tiny-lm", folder))
    if args.only:
        data = [d for d in data if d[0] in args.only]

    jobs, where = [], []
    for name, kind, folder in data:
        curves = load_published(folder) if kind == "published" else load_tiny(folder)
        for protocol in args.protocols:
            if protocol == "paper" and kind != "published":
                continue
            for train, test in splits(kind, curves, protocol):
                jobs.append((kind, str(folder), protocol, train, test, FROM if kind != "published" else 0.0))
                where.append((name, protocol))
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run_split, jobs))
    elapsed = time.perf_counter() - t0

    grouped: dict[tuple[str, str], list[dict]] = {}
    for key, res in zip(where, results):
        grouped.setdefault(key, []).append(res)
    report = {"elapsed_s": elapsed, "jobs": args.jobs, "table": {}, "fits": {}}
    print(f"{'data':11s} {'protocol':8s} {'method':11s} {'curves':>6s} {'PredE':>7s} {'WorstE':>7s} {'(max)':>7s} "
          f"{'cover90':>7s} {'final':>6s} {'width':>6s}")
    for (name, protocol), res in grouped.items():
        table = summarise(res)
        report["table"][f"{name}/{protocol}"] = table
        report["fits"][f"{name}/{protocol}"] = res
        for method, t in table.items():
            print(f"{name:11s} {protocol:8s} {method:11s} {t['curves']:6d} {100 * t['pred_e']:6.3f}% "
                  f"{100 * t['worst_e']:6.3f}% {100 * t['worst_max']:6.3f}% {100 * t['coverage']:6.1f}% "
                  f"{100 * t['final_coverage']:5.0f}% {100 * t['width']:5.2f}%")
        if name in PUBLISHED and protocol == "paper":
            pe, we = PUBLISHED[name]
            print(f"{name:11s} {protocol:8s} {'published':11s} {6:6d} {pe:6.3f}% {we:6.3f}%")
    if args.markdown:
        print("\n| data | protocol | method | held-out curves | PredE | WorstE (mean) | WorstE (max) | 90% interval "
              "held (points) | held (final loss) | mean width |\n|---|---|---|---|---|---|---|---|---|---|")
        for key, table in report["table"].items():
            name, protocol = key.split("/")
            for method, t in table.items():
                print(f"| {name} | {protocol} | {method} | {t['curves']} | {100 * t['pred_e']:.3f}% | "
                      f"{100 * t['worst_e']:.3f}% | {100 * t['worst_max']:.3f}% | {100 * t['coverage']:.1f}% | "
                      f"{100 * t['final_coverage']:.0f}% | {100 * t['width']:.2f}% |")
        points = {m: [0.0, 0] for m in next(iter(report["table"].values()))}
        for res in results:
            for m, rows in res["scores"].items():
                for r in rows.values():
                    points[m][0] += r["covered"] * r["points"]
                    points[m][1] += r["points"]
        print("\npooled coverage of the 90% intervals over every held-out point: "
              + ", ".join(f"{m} {100 * a / b:.1f}% of {b:,}" for m, (a, b) in points.items()))
    if args.live:
        rows = live_checks(sets)
        report["live"] = rows
        print("\n| pilot law (fitted on) | run | cooldown | real final loss | predicted | 90% interval | error | held | time |"
              "\n|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['pilot']} constant + cosine | {r['run']} constant | {r['cooldown']} | {r['real']:.4f} | "
                  f"{r['predicted']:.4f} | {r['low']:.4f} .. {r['high']:.4f} | {100 * r['error']:+.2f}% | "
                  f"{'yes' if r['held'] else 'no'} | {r['seconds']:.2f} s |")
    seconds = {}
    for (name, _), res in grouped.items():
        seconds[name] = seconds.get(name, 0.0) + sum(sum(r["seconds"].values()) for r in res)
    print(f"\nwall time {elapsed:.1f} s with {args.jobs} processes; CPU seconds of fitting per data set: "
          + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    report["fit_seconds"] = seconds
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
