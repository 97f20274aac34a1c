"""The ``cadence`` command line. Errors are one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from cadence import __version__
from cadence.errors import CadenceError
from cadence.schedules import COMBINATORS, FAMILIES, parse
from cadence.time import Rates, Unit

EXAMPLES = """examples:
  cadence list
  cadence schedule "cosine(peak=3e-4, final=3e-5, warmup=200)" --total 10000 --csv
  cadence schedule "wsd(peak=3e-4, warmup=200, decay='20%', shape='1-sqrt')" --total 10000 --plot wsd.png
  cadence schedule "power(peak=0.02, a=4.6, b=-0.51, warmup='1%')" --total 5000 \\
      --samples-per-step 256 --tokens-per-sample 1024 --unit tok --plot power.png
  cadence gallery --out gallery.png
  cadence run digits --lr "cosine(peak=3e-3, warmup='5%')" --steps 600 --out runs/digits-cos
  cadence bench tiny-lm --quick
  cadence bench digits --plan cos="cosine(peak=3e-3)" --plan wsd="wsd(peak=3e-3, decay='20%')" --seeds 3 --out cmp
  cadence forecast fit runs/const runs/cos --law multipower -o law.json
  cadence forecast rank law.json --total 2000 --schedule cos="cosine(peak=2e-3)" --schedule wsd="wsd(peak=2e-3)"
  cadence recommend --params 1B --tokens 100B --seq-len 4096
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        raise CadenceError(f"{message} (see '{self.prog} --help')")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _add_rates(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples-per-step", type=_positive_float, help="samples in one optimizer step (the batch size)")
    p.add_argument("--tokens-per-sample", type=_positive_float, help="tokens in one sample (the sequence length)")
    p.add_argument("--steps-per-epoch", type=_positive_float, help="optimizer steps in one epoch")


def _rates(args) -> Rates:
    return Rates(args.samples_per_step, args.tokens_per_sample, args.steps_per_epoch)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cadence", description="Plan, drive and forecast what changes during training.",
                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cadence {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("schedule", help="print or plot one schedule", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", metavar="SPEC", help="a schedule call, e.g. \"cosine(peak=3e-4, warmup=200)\"")
    p.add_argument("--total", type=_positive_int, required=True, help="optimizer steps in the run")
    p.add_argument("--csv", action="store_true", help="print step,value rows")
    p.add_argument("--plot", metavar="PATH", help="draw the schedule to a .png/.pdf/.svg file")
    p.add_argument("--unit", default="st", choices=["st", "sa", "tok", "ep", "dur"],
                   help="second x axis of the plot (needs the matching rates)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing plot file")
    _add_rates(p)

    sub.add_parser("list", help="list schedule families and combinators with their parameters")

    g = sub.add_parser("gallery", help="draw every family in one figure")
    g.add_argument("--out", default="gallery.png", help="figure path (default: gallery.png)")
    g.add_argument("--total", type=_positive_int, default=1000, help="steps per panel (default: 1000)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing file")

    sub.add_parser("workloads", help="list the training workloads")

    r = sub.add_parser("run", help="train one workload under a plan (resumable)", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("workload", nargs="?", help="tiny-lm, digits, digits-cnn or logreg (omit with --resume)")
    r.add_argument("--lr", metavar="SPEC", help="learning-rate schedule (default: the workload's)")
    r.add_argument("--set", metavar="FIELD=SPEC", action="append", default=[],
                   help="drive another optimizer field, e.g. --set weight_decay=\"linear(peak=0.1)\"")
    r.add_argument("--steps", type=_positive_int, help="optimizer steps (default: the workload's)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", required=True, metavar="DIR", help="run folder")
    r.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    r.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    _add_training(r)
    r.add_argument("--checkpoint-every", type=_positive_int, default=100, metavar="K")

    b = sub.add_parser("bench", help="compare plans over seeds on one workload and write a report", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("workload", help="tiny-lm, digits, digits-cnn or logreg")
    b.add_argument("--plan", metavar="NAME=SPEC", action="append", default=[], help="a plan (LR schedule); repeat")
    b.add_argument("--quick", action="store_true",
                   help="tiny-lm only: cosine, linear, WSD (1-sqrt, 20%%) and REX at equal budget, in minutes")
    b.add_argument("--seeds", type=_positive_int, help="seeds per plan (default 3; --quick: 1)")
    b.add_argument("--steps", type=_positive_int, help="steps per run (default: the workload's)")
    b.add_argument("--out", metavar="DIR", help="comparison folder (default: out/bench-WORKLOAD)")
    b.add_argument("--jobs", type=_positive_int, default=1, help="runs in parallel processes")
    b.add_argument("--baseline", metavar="NAME", help="plan to compare against (default: the first)")
    b.add_argument("--target", type=float, help="target validation loss (default: the baseline's final loss)")
    b.add_argument("--set", metavar="FIELD=SPEC", action="append", default=[],
                   help="drive another optimizer field the same way in every plan")
    b.add_argument("--overwrite", action="store_true", help="replace a comparison with other settings in --out")
    _add_training(b)

    rp = sub.add_parser("report", help="rewrite the report of a comparison folder")
    rp.add_argument("folder")

    from cadence import cli_forecast

    cli_forecast.add_parser(sub, _Parser, _positive_int, _positive_float)
    return parser


def _add_training(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", help="model size (see 'cadence workloads')")
    p.add_argument("--batch-size", type=_positive_int)
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    p.add_argument("--weight-decay", type=float, help="base weight decay (default: the workload's)")
    p.add_argument("--eval-every", type=_positive_int, metavar="K", help="steps between validation measurements")
    p.add_argument("--threads", type=_positive_int, help="torch threads per run")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_named(items: list[str], flag: str, example: str) -> dict[str, str]:
    """``NAME=SPEC`` arguments as {name: normalised spec}; names must be unique."""
    out = {}
    for item in items:
        name, sep, spec = item.partition("=")
        name = name.strip()
        if not sep or not name or not spec.strip():
            raise CadenceError(f"{flag} expects {example}; got {item!r}")
        if name in out:
            raise CadenceError(f"{flag}: name {name!r} is given twice")
        out[name] = parse(spec).spec()
    return out


def _fields(items: list[str]) -> dict[str, str]:
    fields = parse_named(items, "--set", "FIELD=SPEC, e.g. weight_decay=\"linear(peak=0.1)\"")
    if "lr" in fields:
        raise CadenceError("use --lr for the learning rate, not --set lr=...")
    return fields


def _cmd_schedule(args) -> None:
    schedule = parse(args.spec)
    rates = _rates(args)
    values = schedule.values(args.total, rates)
    if args.csv:
        out = sys.stdout
        out.write("step,value\n")
        out.writelines(f"{i},{v!r}\n" for i, v in enumerate(values.tolist()))
    if args.plot:
        from cadence.plotting import plot_schedule

        path = plot_schedule(schedule, args.total, args.plot, rates=rates, unit=Unit(args.unit), overwrite=args.overwrite)
        print(f"wrote {path}", file=sys.stderr if args.csv else sys.stdout)
    if not args.csv and not args.plot:
        i_max = int(np.argmax(values))
        print(schedule.spec())
        print(f"steps: {args.total}   first: {values[0]:.6g}   max: {values[i_max]:.6g} (step {i_max})   "
              f"last: {values[-1]:.6g}   mean: {values.mean():.6g}")
        print("(add --csv for every step, --plot PATH for a figure)")


def _cmd_list() -> None:
    for title, classes in (("families", FAMILIES), ("combinators", COMBINATORS)):
        print(f"{title}:")
        for cls in classes:
            print(f"  {cls.name}({', '.join(cls.parameters())})")
            print(f"      {cls.formula}")
            if cls.source and cls.source != "-":
                print(f"      source: {cls.source}")
    print("\ndurations: an int (steps) or '500st', '20%', '0.2dur', '3ep', '2Mtok', '64Ksa'")
    print("conventions: run of T steps uses steps 0..T-1; warmup W ramps peak*i/W; after it p = (i-W)/(T-W)")


def _cmd_gallery(args) -> None:
    from cadence.plotting import gallery

    print(f"wrote {gallery(args.out, args.total, overwrite=args.overwrite)}")


def _torch_extra():
    try:
        import torch  # noqa: F401
    except ImportError:
        raise CadenceError("training needs torch: pip install -c constraints.txt 'cadence[bench]'") from None


def _cmd_workloads() -> None:
    _torch_extra()
    from cadence.bench.workloads import WORKLOADS

    for name, cls in WORKLOADS.items():
        w = cls()
        print(f"{name}: {w.description}")
        print(f"    sizes: {', '.join(w.sizes)} (default {w.default_size}); batch {w.batch_size}; "
              f"default {w.default_steps} steps; eval every {w.eval_every}")
        print(f"    default lr: {w.default_lr}; weight decay {w.weight_decay}; clip {w.clip}")


def _cmd_run(args) -> int:
    _torch_extra()
    from cadence.bench.runner import RunConfig, read_manifest, train
    from cadence.bench.workloads import get_workload

    if args.workload is None:
        if not args.resume:
            raise CadenceError("name a WORKLOAD (tiny-lm, digits, digits-cnn, logreg), or pass --resume --out DIR")
        manifest = read_manifest(args.out)
        if manifest is None:
            raise CadenceError(f"cannot resume: {args.out} holds no cadence run (no run.json)")
        config = RunConfig(**manifest["config"])
        config.workload = ""  # take everything from the manifest
    else:
        w = get_workload(args.workload)
        config = RunConfig(workload=args.workload, plan={"lr": parse(args.lr or w.default_lr).spec(), **_fields(args.set)},
                           steps=args.steps or w.default_steps, seed=args.seed, size=args.size,
                           batch_size=args.batch_size, optimizer=args.optimizer, weight_decay=args.weight_decay,
                           eval_every=args.eval_every, checkpoint_every=args.checkpoint_every, device=args.device)
    if args.seed < 0:
        raise CadenceError(f"--seed must be >= 0; got {args.seed}")
    manifest = train(config, args.out, resume=args.resume, overwrite=args.overwrite,
                     progress=not args.no_progress and sys.stderr.isatty(), threads=args.threads)
    from cadence.bench.report import load_metrics

    m = load_metrics(f"{args.out}/metrics.csv")
    print(f"{manifest['config']['workload']} seed {manifest['config']['seed']}: {manifest['status']} at step "
          f"{manifest['step']}; final train loss {m['train_loss'][-1]:.4f}, val loss {m['val_loss'][-1]:.4f}; "
          f"{manifest.get('train_seconds', 0):.1f}s training")
    print(f"metrics: {args.out}/metrics.csv")
    return 0


def _cmd_bench(args) -> None:
    _torch_extra()
    from cadence.bench.compare import QUICK, BenchConfig, run_bench
    from cadence.bench.workloads import get_workload

    w = get_workload(args.workload)
    if args.quick:
        if args.workload != QUICK["workload"]:
            raise CadenceError(f"--quick is defined for {QUICK['workload']} only")
        if args.plan:
            raise CadenceError("--quick brings its own plans; drop --plan or drop --quick")
        plans = dict(QUICK["plans"])
        defaults = QUICK
    else:
        plans = parse_named(args.plan, "--plan", "NAME=SPEC, e.g. cos=\"cosine(peak=1e-3)\"")
        if not plans:
            raise CadenceError("give at least one --plan NAME=SPEC (or --quick for tiny-lm)")
        defaults = {}
    config = BenchConfig(
        workload=args.workload, plans=plans,
        steps=args.steps or defaults.get("steps") or w.default_steps,
        seeds=args.seeds or defaults.get("seeds") or 3,
        size=args.size or defaults.get("size"), batch_size=args.batch_size, optimizer=args.optimizer,
        weight_decay=args.weight_decay, eval_every=args.eval_every or defaults.get("eval_every"),
        device=args.device, channels=_fields(args.set), baseline=args.baseline or defaults.get("baseline"), target=args.target,
    )
    out = args.out or f"out/bench-{args.workload}" + ("-quick" if args.quick else "")
    log = (lambda msg: None) if args.no_progress else (lambda msg: print(msg, file=sys.stderr))
    result = run_bench(config, out, jobs=args.jobs, overwrite=args.overwrite, progress=not args.no_progress, log=log,
                       threads=args.threads)
    print(result["table"])
    print(f"\nreport: {result['report']}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "schedule":
            _cmd_schedule(args)
        elif args.command == "list":
            _cmd_list()
        elif args.command == "gallery":
            _cmd_gallery(args)
        elif args.command == "workloads":
            _cmd_workloads()
        elif args.command == "run":
            return _cmd_run(args)
        elif args.command == "bench":
            _cmd_bench(args)
        elif args.command == "forecast":
            from cadence import cli_forecast

            cli_forecast.run(args)
        elif args.command == "recommend":
            from cadence import cli_forecast

            return cli_forecast.recommend(args)
        elif args.command == "report":
            from cadence.bench.report import write_report

            result = write_report(args.folder)
            print(result["table"])
            print(f"\nreport: {result['report']}")
        return 0
    except CadenceError as e:
        print(f"cadence: error: {e}", file=sys.stderr)
        return 3 if type(e).__name__ == "TrainingDiverged" else 2
    except BrokenPipeError:  # `cadence schedule ... --csv | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("cadence: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
