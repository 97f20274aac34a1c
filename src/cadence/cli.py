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
    return parser


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
        return 0
    except CadenceError as e:
        print(f"cadence: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `cadence schedule ... --csv | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("cadence: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
