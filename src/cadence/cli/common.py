"""What every command group shares: the one-line-error parser, argument types, NAME=SPEC lists."""

from __future__ import annotations

import argparse
import math

from cadence.errors import CadenceError
from cadence.time import Rates

EXAMPLES = """examples:
  cadence list
  cadence schedule "cosine(peak=3e-4, final=3e-5, warmup=200)" --total 10000 --csv
  cadence schedule "wsd(peak=3e-4, warmup=200, decay='20%', shape='1-sqrt')" --total 10000 --plot wsd.png
  cadence schedule "power(peak=0.02, a=4.6, b=-0.51, warmup='1%')" --total 5000 \\
      --samples-per-step 256 --tokens-per-sample 1024 --unit tok --plot power.png
  cadence gallery --out gallery.png
  cadence run digits --lr "cosine(peak=3e-3, warmup='5%')" --steps 600 --out runs/digits-cos
  cadence bench tiny-lm --quick
  cadence run tiny-lm --plan plan.yaml --out runs/lm      # channels, unit and horizon in one file
  cadence schedule --plan plan.yaml --plot plan.png       # preview every channel on the plan's clock
  cadence bench digits --candidate cos="cosine(peak=3e-3)" --candidate wsd="wsd(peak=3e-3, decay='20%')" --seeds 3 --out cmp
  cadence refine runs/digits-cos                           # a refined LR schedule from the run's gradient norms
  cadence forecast fit runs/const runs/cos --law multipower -o law.json
  cadence forecast rank law.json --total 2000 --schedule cos="cosine(peak=2e-3)" --schedule wsd="wsd(peak=2e-3)"
  cadence run tiny-lm --lr "wsd(peak=2e-3, warmup=50)" --steps 600 --forecast law.json --out runs/wsd  # forecast beside loss
  cadence recommend --params 1B --tokens 100B --seq-len 4096
"""


# Run settings a plan file may hold besides unit, horizon, channels and guards (cadence.bench.runner.RunConfig's
# fields, forecast included: a law file whose content the run records), and where `cadence run` logs (tensorboard:
# an output folder, not a setting).
PLAN_FILE_SETTINGS = ("workload", "seed", "size", "batch_size", "micro_batch", "optimizer", "weight_decay", "clip",
                      "eval_every", "checkpoint_every", "skip_nonfinite", "device", "tensorboard", "forecast", "data",
                      "init", "init_optimizer", "dense_eval", "difficulty")


class Parser(argparse.ArgumentParser):
    """argparse with errors raised as one line instead of usage text and exit."""

    def error(self, message: str) -> None:
        raise CadenceError(f"{message} (see '{self.prog} --help')")


def command(sub, name: str, help: str, examples: str = EXAMPLES, **kw) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with ``examples`` (an "examples:" block, printed as written)."""
    return sub.add_parser(name, help=help, epilog=examples, formatter_class=argparse.RawDescriptionHelpFormatter, **kw)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def add_rates(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples-per-step", type=positive_float, help="samples in one optimizer step (the batch size)")
    p.add_argument("--tokens-per-sample", type=positive_float, help="tokens in one sample (the sequence length)")
    p.add_argument("--steps-per-epoch", type=positive_float, help="optimizer steps in one epoch")


def rates(args) -> Rates:
    return Rates(args.samples_per_step, args.tokens_per_sample, args.steps_per_epoch)


def parse_named(items: list[str], flag: str, example: str) -> dict[str, str]:
    """``NAME=SPEC`` arguments as {name: normalised spec}; names must be unique."""
    from cadence.schedules import parse

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
