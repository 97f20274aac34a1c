"""``cadence forecast ...``: fit a loss-curve law, predict, rank and optimise schedules;
``cadence recommend``: hyperparameter laws (Step Law, Power scheduler)."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from cadence.cli import common
from cadence.errors import CadenceError, CheckFailed
from cadence.schedules import parse

positive_int, positive_float = common.positive_int, common.positive_float


_PILOTS = """  cadence run tiny-lm --size xs --lr "constant(2e-3, warmup=50)" --steps 600 --eval-every 20 --out runs/constant
  cadence run tiny-lm --size xs --lr "cosine(peak=2e-3, warmup=50)" --steps 600 --eval-every 20 --out runs/cosine
"""
_FIT = "  cadence forecast fit runs/constant runs/cosine --law multipower --from 200 -o law.json\n"
_PREDICT = "  cadence forecast predict law.json --schedule \"wsd(peak=2e-3, warmup=50)\" --total 600 --plot wsd.png\n"
_RANK = ("  cadence forecast rank law.json --total 600 --schedule cos=\"cosine(peak=2e-3, warmup=50)\" \\\n"
         "      --schedule wsd=\"wsd(peak=2e-3, warmup=50)\"\n")
_OPTIMIZE = "  cadence forecast optimize law.json --total 600 --peak 2e-3 --warmup 50\n"
FORECAST_EXAMPLES = "examples (pilot runs, a law fitted to them, then questions to the law):\n" + _PILOTS + _FIT + _PREDICT + _RANK + _OPTIMIZE
FIT_EXAMPLES = ("examples:\n" + _FIT
                + "  cadence forecast fit runs/constant runs/cosine --law annealing --from 200 -o law-annealing.json\n"
                "  cadence forecast fit curve.csv --schedule \"cosine(peak=3e-4, warmup=200)\" --total 10000 -o law.json"
                "   # a step,loss CSV\n")
PREDICT_EXAMPLES = "examples:\n" + _PREDICT + "  cadence forecast predict law.json --schedule \"linear(peak=2e-3, warmup=50)\" --total 600 --csv\n"
RANK_EXAMPLES = "examples:\n" + _RANK
OPTIMIZE_EXAMPLES = ("examples:\n" + _OPTIMIZE
                     + "  cadence forecast optimize law.json --total 600 --peak 2e-3 --warmup 50 --csv optimised.csv\n")
RECOMMEND_EXAMPLES = """examples:
  cadence recommend --params 1B --tokens 100B --seq-len 4096
  cadence recommend --params 350M --tokens 20B --json
  cadence recommend --params 7e9 --tokens 2T --seq-len 8192 --batch 512 --strict
"""


def register(sub) -> None:
    rec = common.command(sub, "recommend", "peak LR and batch size from the model and data size (Step Law, Power scheduler)",
                         RECOMMEND_EXAMPLES)
    rec.add_argument("--params", required=True, metavar="N", help="non-embedding parameters, e.g. 350M or 1.3e9")
    rec.add_argument("--tokens", required=True, metavar="D", help="training tokens, e.g. 20B")
    rec.add_argument("--seq-len", type=positive_int, help="tokens per sequence: gives the batch in sequences and the steps")
    rec.add_argument("--batch", type=positive_float, metavar="SEQS",
                     help="batch size in sequences for the Power scheduler (default: the Step Law batch)")
    rec.add_argument("--json", action="store_true", help="print the recommendation as JSON")
    rec.add_argument("--strict", action="store_true", help="exit with status 1 when an input is outside a law's documented range")
    rec.set_defaults(handler=recommend)

    f = common.command(sub, "forecast", "fit a loss-curve law and predict any schedule's loss", FORECAST_EXAMPLES)
    f.set_defaults(handler=run)
    fs = f.add_subparsers(dest="forecast_command", metavar="ACTION", parser_class=common.Parser)
    fit = common.command(fs, "fit", "fit a law to runs: cadence run folders or step,lr,loss CSV files", FIT_EXAMPLES)
    fit.add_argument("runs", nargs="+", metavar="RUN")
    fit.add_argument("--law", choices=["combined", "multipower", "annealing"], default="combined",
                     help="combined (default): both laws under both warmup conventions, predicting the geometric "
                          "mean of the four; or one law")
    fit.add_argument("-o", "--out", required=True, help="law file to write (JSON)")
    fit.add_argument("--schedule", metavar="SPEC", help="the runs' LR schedule, if their files lack a per-step lr")
    fit.add_argument("--total", type=positive_int, help="run length for --schedule")
    fit.add_argument("--loss", choices=["val", "train"], default="val", help="which loss of a run folder (default val)")
    fit.add_argument("--from", dest="start", type=positive_int, default=0, metavar="STEP",
                     help="leave out the losses measured before STEP: the first phase of training, which the laws "
                          "do not describe (default: from the end of each run's warmup)")
    fit.add_argument("--count-warmup", action="store_true",
                     help="count the initial warmup's LR rises as negative decrements (the Multi-Power Law authors' convention)")
    fit.add_argument("--overwrite", action="store_true")

    pred = common.command(fs, "predict", "predict the loss curve of a schedule", PREDICT_EXAMPLES)
    pred.add_argument("law")
    pred.add_argument("--schedule", metavar="SPEC", required=True)
    pred.add_argument("--total", type=positive_int, required=True)
    pred.add_argument("--csv", action="store_true", help="print step,lr,loss,low,high rows (low..high: the interval)")
    pred.add_argument("--plot", metavar="PATH")
    pred.add_argument("--overwrite", action="store_true")
    _add_strict(pred)
    _add_level(pred)

    rank = common.command(fs, "rank", "rank candidate schedules by predicted final loss", RANK_EXAMPLES)
    rank.add_argument("law")
    rank.add_argument("--schedule", metavar="NAME=SPEC", action="append", required=True,
                      help="a candidate: an LR schedule spec, or a plan file (NAME=plan.yaml: its lr channel over its "
                           "horizon; a batch that changes, a controller and any other channel that changes are refused)")
    rank.add_argument("--total", type=positive_int,
                      help="optimizer steps in the run (default: the plan files' own; every candidate covers the same)")
    common.add_rates(rank)  # what a plan file on a sample or token clock cannot say itself
    rank.add_argument("--plot", metavar="PATH")
    rank.add_argument("--overwrite", action="store_true")
    _add_strict(rank)
    _add_level(rank)

    opt = common.command(fs, "optimize", "the non-increasing schedule with the lowest predicted final loss", OPTIMIZE_EXAMPLES)
    opt.add_argument("law")
    opt.add_argument("--total", type=positive_int, help="optimizer steps in the run (required without --plan)")
    opt.add_argument("--peak", type=positive_float, help="the peak LR (required without --plan)")
    opt.add_argument("--warmup", type=int, help="steps of linear warmup from 0 (default 0)")
    opt.add_argument("--plan", metavar="FILE", help="take the run's length, peak and warmup from a plan file's lr channel")
    common.add_rates(opt)  # what a plan file on a sample or token clock cannot say itself
    opt.add_argument("--csv", metavar="PATH", help="write step,lr of the optimised schedule")
    opt.add_argument("--overwrite", action="store_true")
    _add_strict(opt)
    _add_level(opt)

    live = fs.add_parser("live", help="for a run in its constant-LR phase: the loss after a cooldown started now or later",
                         epilog=LIVE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    live.add_argument("run", metavar="RUN", help="a cadence run folder or a step,lr,loss CSV (the LR of every step)")
    live.add_argument("--law", metavar="FILE", action="append", required=True,
                      help="a law file fitted on a pilot (repeat: the first is the forecast, all of them give the interval)")
    live.add_argument("--cooldown", metavar="D", required=True,
                      help="cooldown length: steps, or a duration ('2Mtok', '1ep'; '20%%': that share of the whole run)")
    live.add_argument("--shape", choices=LIVE_SHAPES, default="1-sqrt", help="cooldown shape (default 1-sqrt)")
    live.add_argument("--final", type=float, default=0.0, help="the LR at the cooldown's end (default 0)")
    live.add_argument("--json", action="store_true", help="print {now, later} as JSON")
    _add_strict(live)
    _add_level(live)


def indistinct(order: list[str], bounds: dict[str, tuple[float, float]], level: float) -> str:
    """Which candidates cannot be told from the best: their interval reaches below the top of the best's."""
    best = order[0]
    tied = [n for n in order[1:] if bounds[n][0] <= bounds[best][1]]
    if not tied:
        return f"{best} is best: no other candidate's {100 * level:g}% interval reaches its own"
    return (f"not distinguishable from {best} within the {100 * level:g}% intervals: {', '.join(tied)} "
            "(the intervals overlap: train them both, or narrow the intervals with more or longer pilot runs)")


def _add_level(p: argparse.ArgumentParser) -> None:
    p.add_argument("--level", type=float, default=0.9, metavar="P",
                   help="the probability the interval around each prediction is meant to hold (default 0.9)")


def _interval(law, lrs, step: int, level: float) -> tuple[float, float, float, str]:
    """(prediction, low, high, its text) at ``step``; the text says when the law has no interval."""
    pred, low, high = (float(v[0]) for v in law.predict_interval(lrs, [step], level))
    if not law.has_interval:
        return pred, low, high, "no interval: this law file records no uncertainty (refit it with this version)"
    return pred, low, high, f"{100 * level:g}% interval {low:.4f} .. {high:.4f}"


def _add_strict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1, before any forecast, when a schedule is outside what the law was fitted on "
                        "(without it: one warning line each on stderr)")


def _outside(notes: list[str], strict: bool) -> list[str]:
    """The range notes to warn about; with --strict, a one-line error (exit status 1) instead."""
    if notes and strict:
        raise CheckFailed(f"--strict: outside what the law was fitted on: {'; '.join(notes)}")
    return notes


def _warn(notes: list[str]) -> None:
    for note in dict.fromkeys(notes):  # each once, in order
        print(f"cadence: warning: {note}", file=sys.stderr)


def _shown(path) -> str:
    """A path as text that any terminal encoding can print (a non-UTF-8 name keeps its bytes as escapes)."""
    return str(path).encode("utf-8", "backslashreplace").decode("utf-8")


def _writable(path: str, overwrite: bool, flag: str) -> None:
    """Refuse an output path before the work that precedes writing it, not after."""
    from cadence._atomic import refuse_existing

    if "\x00" in str(path):
        raise CadenceError(f"{flag}: a file name cannot contain a NUL byte")
    try:
        target = refuse_existing(path, overwrite)
        if target.is_dir():
            raise CadenceError(f"{flag}: {_shown(target)} is a folder; give a file name")
        if not target.parent.is_dir():
            raise CadenceError(f"{flag}: cannot write {_shown(target)}: folder {_shown(target.parent)} does not exist")
    except OSError as e:  # a name too long, a folder that cannot be searched
        raise CadenceError(f"{flag}: cannot write {_shown(path)[:200]}: {e.strerror or e}") from None
    except ValueError as e:
        if isinstance(e, CadenceError):
            raise
        raise CadenceError(f"{flag}: cannot write {_shown(path)[:200]!r}: {e}") from None


def _sampled(law, lrs: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, lrs, predicted losses) at no more than PLOT_POINTS evenly spaced steps from ``first`` on."""
    from cadence.forecast.limits import PLOT_POINTS

    total = len(lrs)
    steps = np.unique(np.linspace(first, total - 1, min(PLOT_POINTS, total - first)).round().astype(np.int64))
    return steps, lrs[steps], law.predict(lrs, steps)


def _first_step(lrs: np.ndarray) -> int:
    """The first step with LR area > 0: the laws predict nothing before it."""
    positive = lrs > 0
    return int(np.argmax(positive)) if positive.any() else len(lrs)


def _plot(curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], path: str, overwrite: bool, title: str) -> None:
    from pathlib import Path

    from cadence._atomic import atomic_write
    from cadence.plotting import _pyplot, _ready

    target = _ready(Path(path), overwrite)
    plt = _pyplot()
    fig, (ax, lr_ax) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=[2, 1])
    for name, (steps, lrs, losses) in curves.items():
        ax.plot(steps, losses, lw=1.4, label=name)
        lr_ax.plot(steps, lrs, lw=1.2)
    tails = [losses[len(losses) // 10:] for _, _, losses in curves.values()]
    lo = min(float(np.min(t)) for t in tails)
    hi = max(float(np.percentile(t, 95)) for t in tails)
    pad = 0.02 * max(abs(lo), hi - lo, 1e-12)
    ax.set_ylim(lo - pad, max(hi, lo + pad))
    ax.set_ylabel("predicted loss")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    lr_ax.set_ylabel("LR")
    lr_ax.set_xlabel("step")
    lr_ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        atomic_write(target, lambda tmp: fig.savefig(tmp, dpi=110, format=target.suffix.lstrip(".").lower()))
    except OSError as e:
        raise CadenceError(f"cannot write {_shown(target)}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    print(f"wrote {_shown(target)}", file=sys.stderr)


def recommend(args) -> int:
    import json

    from cadence.forecast.hyper import recommend as advise

    advice = advise(args.params, args.tokens, seq_len=args.seq_len, batch_sequences=args.batch)
    if args.json:
        print(json.dumps([a.to_dict() for a in advice], indent=2))
    else:
        for i, a in enumerate(advice):
            print(("\n" if i else "") + f"{a.law}  ({a.source})")
            for line in a.formula:
                print(f"  {line}")
            for key, value in a.values.items():
                print(f"  {key:18s} {value:.3g}" if "lr" in key else f"  {key:18s} {value:,.0f}")
            if a.spec:
                print(f"  {'cadence spec':18s} {a.spec}")
            print(f"  {'documented range':18s} {a.documented}")
            print(f"  {'in range':18s} {'yes' if a.in_range else 'NO'}")
            for flag in a.flags:
                print(f"  ! {flag}")
            for note in a.notes:
                print(f"  note: {note}")
        if len(advice) == 1:
            print("\n(pass --seq-len to get the batch in sequences, the run length in steps and the Power scheduler setting)")
    flagged = [f for a in advice for f in a.flags]
    if flagged:
        print(f"cadence: warning: {len(flagged)} input(s) outside a law's documented range: {flagged[0]}", file=sys.stderr)
    return 1 if flagged and args.strict else 0


def run(args) -> None:
    from cadence.forecast import fit, load
    from cadence.forecast.intervals import check_level
    from cadence.forecast.io import read_run
    from cadence.forecast.limits import check_total

    cmd = args.forecast_command
    if cmd is None:
        raise CadenceError("forecast needs an action: fit, predict, rank, optimize or live")
    if cmd == "fit":
        _writable(args.out, args.overwrite, "--out")
        curves = [_from(read_run(r, schedule=args.schedule, total=args.total, loss=args.loss), args.start)
                  for r in args.runs]
        law = fit(curves, law=args.law, warmup="count" if args.count_warmup else "skip")
        law.save(args.out)
        since = f" from step {args.start}" if args.start > 0 else ""
        print(f"{args.law} law fitted to {len(curves)} run(s){since}: "
              + ", ".join(f"{k}={v:.4g}" for k, v in law.params.items()))
        for name, s in law.report["curves"].items():
            r2, pred_e, worst_e = ("n/a" if s[k] is None else f"{s[k] * (100 if k != 'r2' else 1):.{3 + (k == 'r2')}f}"
                                   for k in ("r2", "pred_e", "worst_e"))
            used, measured = law.report["points"][name]
            thinned = f"  (fitted on {used:,} of {measured:,} points)" if used < measured else ""
            print(f"  {_shown(name)}: R2 {r2}  PredE {pred_e}%  WorstE {worst_e}%{thinned}")
        for skipped in law.report.get("skipped", []):
            print(f"  not a member: {skipped}")
        for member in getattr(law, "members", [law]):
            info = member.report.get("uncertainty") or {}
            if info.get("folds"):
                print(f"  {member.law}{' (warmup counted)' if member.warmup == 'count' else ''} intervals: calibrated on {info['folds']} refit(s) on parts of these runs, which "
                      f"predicted the parts they had not seen within {100 * info['extra']:.2f}% (RMS)")
            elif info:
                print(f"  {member.law}{' (warmup counted)' if member.warmup == 'count' else ''} intervals: from the fit alone (too few points to refit on parts of the runs)")
        print(f"wrote {_shown(args.out)}")
        return
    if cmd == "live":
        return live(args)
    total = None if args.total is None else check_total(args.total)  # rank and optimize: a plan file may give it
    if cmd == "optimize" and total is not None:
        from cadence.forecast.limits import MAX_OPTIMIZE_STEPS

        total = check_total(args.total, limit=MAX_OPTIMIZE_STEPS, what="forecast optimize")
    if getattr(args, "plot", None):
        _writable(args.plot, args.overwrite, "--plot")
    if getattr(args, "csv", None) and cmd == "optimize":
        _writable(args.csv, args.overwrite, "--csv")
    law = load(args.law)
    if cmd == "predict":
        schedule = parse(args.schedule)
        lrs = schedule.values(total)
        first = _first_step(lrs)
        notes = _outside(law.range_notes(lrs), args.strict)
        level = check_level(args.level)
        final, _, _, interval = _interval(law, lrs, total - 1, level)  # a one-line error if nothing can be predicted
        losses = law.predict_interval(lrs, np.arange(first, total), level) if args.csv else None
        sampled = _sampled(law, lrs, first) if args.plot else None
        _warn(notes)  # after the predictions: a refused one is one error line that carries the notes itself
        if args.csv:
            _write_rows(lrs, losses, first)
        else:
            print(f"{schedule.spec()}: predicted final loss {final:.4f} at step {total - 1} ({law.law} law; {interval})")
        if args.plot:
            _plot({"prediction": sampled}, args.plot, args.overwrite, f"{law.law} law prediction")
    elif cmd == "rank":
        from cadence.forecast.plans import common_steps, is_plan_file, plan_schedule

        named, plans = {}, {}  # name -> normalised spec (or a plan file's label); name -> PlanSchedule
        for item in args.schedule:
            name, sep, value = item.partition("=")
            name = name.strip()
            if name in named:
                raise CadenceError(f"--schedule: name {name!r} is given twice")
            if sep and name and is_plan_file(value):
                try:
                    plans[name] = plan_schedule(value.strip(), law, common.rates(args))
                except CadenceError as e:
                    raise type(e)(f"--schedule {name}: {e}", field=e.field) from None
                named[name] = plans[name].label
            else:
                named.update(common.parse_named([item], "--schedule", "NAME=SPEC or NAME=PLAN.yaml"))
        total = common_steps(plans, total)
        finals, bounds, curves, notes = {}, {}, {}, []
        level = check_level(args.level)
        for name, spec in named.items():
            lrs = plans[name].lrs if name in plans else parse(spec).values(total, common.rates(args))
            notes += _outside([f"--schedule {name}: {note}" for note in law.range_notes(lrs)], args.strict)
            try:
                finals[name], low, high, _ = _interval(law, lrs, total - 1, level)
                bounds[name] = (low, high)
                if args.plot:
                    curves[name] = _sampled(law, lrs, _first_step(lrs))
            except CadenceError as e:
                raise CadenceError(f"--schedule {name}: {e}") from None
        _warn(notes)
        order = sorted(finals, key=finals.get)
        best = finals[order[0]]
        print(f"| rank | schedule | predicted final loss | {100 * level:g}% interval | vs best | spec |\n"
              "|---|---|---|---|---|---|")
        for i, name in enumerate(order, 1):
            low, high = bounds[name]
            print(f"| {i} | {name} | {finals[name]:.4f} | {low:.4f} .. {high:.4f} | +{finals[name] - best:.4f} | "
                  f"`{named[name]}` |")
        if not law.has_interval:
            print("no intervals: this law file records no uncertainty (refit it with this version)")
        else:
            print(indistinct(order, bounds, level))
        if args.plot:
            _plot({n: curves[n] for n in order}, args.plot, args.overwrite, f"ranked by the {law.law} law")
    elif cmd == "optimize":
        from cadence.forecast.optimize import as_spec, check_request, nearest_specs, optimize_schedule, range_notes

        if args.plan is not None:
            from cadence.forecast.plans import optimize_request, plan_schedule

            given = [flag for flag, v in (("--total", args.total), ("--peak", args.peak), ("--warmup", args.warmup))
                     if v is not None]
            if given:
                raise CadenceError(f"--plan gives the run's length, peak and warmup: drop {', '.join(given)}, or drop "
                                   "--plan")
            try:
                plan = plan_schedule(args.plan, law, common.rates(args))
                total, peak, warmup = optimize_request(plan)
            except CadenceError as e:
                raise type(e)(f"--plan: {e}", field=e.field) from None
        elif args.total is None or args.peak is None:
            raise CadenceError("forecast optimize needs --total and --peak, or --plan FILE")
        total, peak, warmup = check_request(law, total, args.peak if args.plan is None else peak,
                                            (args.warmup or 0) if args.plan is None else warmup)
        # What the search can propose (the peak held to the end: the most LR area) and, with --plan, the plan's own lr.
        notes = range_notes(law, total, peak, warmup)
        if args.plan is not None:
            notes += [f"--plan: {note}" for note in law.range_notes(plan.lrs) if note not in notes]
        _outside(notes, args.strict)
        own = float(law.predict(plan.lrs, [total - 1])[0]) if args.plan is not None else None
        lrs, final = optimize_schedule(law, total, peak, warmup)
        # The LRs the search picked below the peak (a note of a kind the notes above do not have).
        notes += _outside([f"the optimised schedule: {note}" for note in range_notes(law, total, peak, warmup, lrs)],
                          args.strict)
        _warn(notes)
        if own is not None:
            print(f"from {_shown(args.plan)}: {total} steps, peak {peak:.4g}, warmup {warmup}; its own lr predicts "
                  f"{own:.4f}")
        _, _, _, interval = _interval(law, lrs, total - 1, check_level(args.level))
        print(f"optimised non-increasing schedule: predicted final loss {final:.4f} ({interval})")
        idx = np.unique(np.linspace(0, total - 1, 11).round().astype(int))
        print("  LR at " + ", ".join(f"{i}: {lrs[i]:.3g}" for i in idx))
        spec = as_spec(lrs, total, warmup)
        spec_loss = float(law.predict(parse(spec).values(total), [total - 1])[0])
        print(f"as a spec (predicted {spec_loss:.4f}): {spec}")
        print("nearest ordinary schedules:")
        for spec, dist, loss in nearest_specs(law, lrs, total, peak, warmup):
            if isinstance(loss, str):  # the law refuses this one (a loss <= 0, say): say so, never a number
                print(f"  no prediction  {spec}   [RMS LR distance {dist:.3g}]: {loss}")
            else:
                print(f"  {loss:.4f} ({loss - final:+.4f})  {spec}   [RMS LR distance {dist:.3g}]")
        if args.csv:
            from pathlib import Path

            from cadence._atomic import atomic_write

            rows = "step,lr\n" + "".join(f"{i},{v!r}\n" for i, v in enumerate(lrs.tolist()))
            try:
                atomic_write(args.csv, lambda tmp: Path(tmp).write_text(rows))
            except OSError as e:
                raise CadenceError(f"--csv: cannot write {_shown(args.csv)}: {e.strerror or e}") from None
            print(f"wrote {_shown(args.csv)}")


def _from(curve, start: int):
    """The curve without its losses measured before step ``start``."""
    if start <= 0:
        return curve
    from cadence.forecast import Curve

    keep = curve.steps >= start
    if not keep.any():
        raise CadenceError(f"--from {start}: {_shown(curve.name)} has no loss measured at or after step {start} "
                           f"(its last is at step {int(curve.steps[-1])})")
    return Curve(steps=curve.steps[keep], losses=curve.losses[keep], lrs=curve.lrs, name=curve.name)


from cadence.schedules.base import SHAPES as LIVE_SHAPES  # noqa: E402 (the shapes decay_from and wsd take)
LIVE_EXAMPLES = """examples:
  cadence forecast live runs/stable --law law.json --cooldown 200
  cadence forecast live runs/stable --law law.json --law law-annealing.json --cooldown '20%' --shape linear --json
  cadence forecast live curve.csv --law law.json --cooldown 500 --final 3e-5
"""


def _live_run(path):
    """(LR of every logged step, the measured losses to check the law on, the run's rates or None)."""
    import json
    from pathlib import Path

    from cadence.forecast.io import read_run
    from cadence.time import Rates

    history = read_run(path, loss="train", skip_warmup=False)  # the train loss is logged at every step
    try:
        observed = read_run(path, loss="val")
    except CadenceError:
        observed = read_run(path, loss="train")
    rates = None
    meta = Path(path) / "run.json"
    if Path(path).is_dir() and meta.is_file():
        try:
            known = json.loads(meta.read_text()).get("rates") or {}
            rates = Rates(**{k: known[k] for k in ("samples_per_step", "tokens_per_sample", "steps_per_epoch")
                             if known.get(k) is not None})
        except (OSError, ValueError, TypeError, AttributeError):
            rates = None
    return history.lrs, observed, history.name, rates


def _live_cooldown(text: str, now: int, rates) -> int:
    """--cooldown in steps: a number of steps, a duration at the run's rates, or a share of the whole run."""
    from cadence.time import Unit, parse_duration

    try:
        d = parse_duration(text, "--cooldown")
        if d.unit is Unit.FRACTION:
            if d.value >= 1:
                raise CadenceError(f"--cooldown {text}: a cooldown cannot be the whole run; give less than 100%")
            steps = d.value * now / (1.0 - d.value)  # as wsd(decay=...): that share of the run that ends with it
        elif d.unit is Unit.STEP:
            steps = d.value
        elif rates is None:
            raise CadenceError(f"--cooldown {text}: a duration in {d.unit.name.lower()}s needs the run's rates (its "
                               "run.json); give the cooldown in steps")
        else:
            steps = d.to_steps(rates=rates, what="--cooldown")
    except CadenceError as e:
        raise CadenceError(str(e) if str(e).startswith("--cooldown") else f"--cooldown: {e}") from None
    steps = int(round(steps))
    if steps < 1:
        raise CadenceError(f"--cooldown {text} is less than one step")
    return steps


def live(args) -> None:
    import json

    from cadence.forecast import load
    from cadence.forecast.intervals import check_level
    from cadence.forecast.live import forecast_live, range_notes

    laws = [load(p) for p in args.law]
    lrs, observed, name, rates = _live_run(args.run)
    cooldown = _live_cooldown(args.cooldown, len(lrs), rates)
    notes = [f"--law {_shown(path)}: {note}" for path, law_notes in
             zip(args.law, range_notes(lrs, laws, cooldown, shape=args.shape, final=args.final)) for note in law_notes]
    _outside(notes, args.strict)
    result = forecast_live(lrs, laws, cooldown, shape=args.shape, final=args.final, observed=observed,
                           level=check_level(args.level))
    _warn(notes)
    if args.json:
        print(json.dumps(result.to_dict()))
        return
    print(f"run {_shown(args.run)}: {len(lrs)} steps logged, constant LR {result.lr:.4g} since step {result.stable_since}")
    for path, law in zip(args.law, laws):
        fitted_on = list(law.report.get("curves", {})) if isinstance(law.report.get("curves"), dict) else []
        source = ("fitted on this run itself" + (" and " + ", ".join(map(_shown, [c for c in fitted_on if c != name]))
                                                 if len(fitted_on) > 1 else "")
                  if name in fitted_on else "a pilot law fitted on " + (", ".join(map(_shown, fitted_on)) or "unrecorded curves"))
        print(f"law {_shown(path)}: {law.law}, {source}")
    print(f"cooldown: {cooldown} steps, {result.shape}, to LR {result.final:.4g}\n")
    print("| start at step | predicted loss at the end | interval | cooldown ends at step |\n|---|---|---|---|")
    for label, p in [("now", result.now)] + [("later", p) for p in result.later]:
        print(f"| {p.step} ({label}) | {p.loss:.4f} | {p.low:.4f} .. {p.high:.4f} | {p.step + cooldown - 1} |")
    print(f"\ninterval ({100 * args.level:g}%): every law's own interval (its fit's uncertainty, calibrated on refits "
          "on parts of its pilot runs; docs/forecast.md gives how often such intervals held), and at least the first "
          "law's error on this run so far")
    for note in result.notes:
        print(f"note: {note}")


def _write_rows(lrs: np.ndarray, predicted, first: int, chunk: int = 1 << 16) -> None:
    """step,lr,loss,low,high for every step, written a chunk at a time (``predicted``: the
    prediction, low and high from ``first`` on); the loss cells are empty before ``first``, the
    first step with LR area (the laws predict nothing there)."""
    out = sys.stdout
    out.write("step,lr,loss,low,high\n")
    for a in range(0, len(lrs), chunk):
        b = min(a + chunk, len(lrs))
        cells = [",,"] * max(0, min(first, b) - a) + [
            f"{x!r},{lo!r},{hi!r}" for x, lo, hi in zip(*(v[max(a, first) - first: b - first].tolist() for v in predicted))]
        out.write("".join(f"{i},{lr!r},{cell}\n" for i, lr, cell in zip(range(a, b), lrs[a:b].tolist(), cells)))
