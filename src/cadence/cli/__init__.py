"""The ``cadence`` command line: one module per command group, errors as one line on stderr.

Exit statuses are those of ``cadence.errors``: 0 ok, 1 a check failed, 2 bad input,
3 training diverged, 130 interrupted. No command ends in a traceback on bad input.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from cadence import __version__
from cadence.cli import forecast, refine, schedule, train
from cadence.cli.common import EXAMPLES, Parser, parse_named
from cadence.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, CadenceError, ExistsError

__all__ = ["main", "build_parser", "parse_named", "describe"]

# Library parameters (CadenceError.field) and the flag a CLI user sets them with.
FLAGS = {
    "total": "--total", "overwrite": "--overwrite", "resume": "--resume", "out": "--out", "threads": "--threads",
    "seeds": "--seeds", "jobs": "--jobs", "baseline": "--baseline", "target": "--target", "steps": "--steps",
    "seed": "--seed", "batch_size": "--batch-size", "eval_every": "--eval-every", "checkpoint_every": "--checkpoint-every",
    "weight_decay": "--weight-decay", "optimizer": "--optimizer", "device": "--device", "size": "--size",
    "warmup": "--warmup", "peak": "--peak", "params": "--params", "tokens": "--tokens", "seq_len": "--seq-len",
    "batch": "--batch", "schedule": "--schedule", "law": "--law", "candidates": "--candidate", "lr": "--lr", "channels": "--set",
    "total_steps": "--total", "samples_per_step": "--samples-per-step", "tokens_per_sample": "--tokens-per-sample",
    "steps_per_epoch": "--steps-per-epoch", "filter_width": "--filter-width", "points": "--points",
}
# Where a command calls the same parameter by another flag.
COMMAND_FLAGS = {"run": {"total_steps": "--steps", "horizon": "--steps"}, "bench": {"total_steps": "--steps", "horizon": "--steps"}}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cadence", description="Plan, drive and forecast what changes during training.",
                    epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cadence {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    schedule.register(sub)
    train.register(sub)
    forecast.register(sub)
    refine.register(sub)
    return parser


def describe(error: CadenceError, command: str | None = None) -> str:
    """The one line the CLI prints for a library error, with the flag that sets the faulty parameter."""
    if isinstance(error, ExistsError):
        return f"{error.path} already exists; pass --overwrite to replace it"
    message = " ".join(str(error).split()) or type(error).__name__
    field = error.field or ""
    flag = COMMAND_FLAGS.get(command or "", {}).get(field) or FLAGS.get(field)
    if flag and not message.startswith(flag):
        return f"{flag}: {message}"
    return message


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a command the way Ctrl-C does: cleanly, with status 130


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = None
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread: leave signals to whoever owns it
        previous = None
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise CadenceError("name a command: schedule, list, gallery, workloads, run, bench, report, refine, forecast or "
                               "recommend (see 'cadence --help')")
        result = args.handler(args)
        return EXIT_OK if result is None else int(result)
    except CadenceError as e:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank raises the same error: rank 0 says it
            print(f"cadence: error: {describe(e, getattr(args, 'command', None))}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # `cadence schedule ... --csv | head`
        sys.stderr.close()
        return EXIT_OK
    except OSError as e:  # a file-system failure no command anticipated: still one line, never a traceback
        where = f": {e.filename!r}" if getattr(e, "filename", None) else ""
        print(f"cadence: error: {e.strerror or type(e).__name__}{where}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("cadence: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
