"""``cadence workloads``, ``cadence run``, ``cadence bench``, ``cadence report``: train and compare."""

from __future__ import annotations

import argparse
import os
import functools
import sys

from cadence.cli import common
from cadence.errors import CadenceError, RunError
from cadence.schedules import parse

# Flags that set a run's settings: with --resume and no WORKLOAD they would be ignored, so they are refused.
_SETTINGS = ("lr", "set", "guard", "steps", "horizon", "unit", "plan", "size", "batch_size", "micro_batch",
             "weight_decay", "eval_every", "checkpoint_every", "device", "forecast", "data", "init", "init_optimizer",
             "dense_eval", "difficulty")
# Run settings a plan file may hold besides unit, horizon and channels, and the flag that sets each.
_FILE_SETTINGS = {"workload": None, "seed": "--seed", "size": "--size", "batch_size": "--batch-size",
                  "micro_batch": "--micro-batch", "optimizer": "--optimizer", "weight_decay": "--weight-decay",
                  "clip": None, "eval_every": "--eval-every", "checkpoint_every": "--checkpoint-every",
                  "skip_nonfinite": "--skip-nonfinite", "device": "--device",
                  "tensorboard": "--tensorboard",  # an output folder, not a run setting: never in RunConfig
                  "forecast": "--forecast",  # a law file: RunConfig (and run.json) hold its content
                  "data": "--data",  # the text workload's corpus folder
                  "init": "--init", "init_optimizer": "--init-optimizer",  # continual pre-training
                  "dense_eval": "--dense-eval", "difficulty": "--difficulty"}


def register(sub) -> None:
    sub.add_parser("workloads", help="list the training workloads").set_defaults(handler=_guarded(lambda args: _cmd_workloads()))

    r = common.command(sub, "run", "train one workload under a plan (resumable)")
    r.add_argument("workload", nargs="?", help="tiny-lm, text, digits, digits-cnn or logreg (omit with --resume)")
    r.add_argument("--data", metavar="DIR", help="text: the corpus folder, one subfolder per domain (default: three "
                   "domains from the standard library)")
    r.add_argument("--plan", metavar="FILE", help="a plan file (.yaml/.json): unit, horizon, channels and run settings")
    r.add_argument("--lr", metavar="SPEC", help="learning-rate schedule or controller (default: the workload's)")
    r.add_argument("--set", metavar="CHANNEL=SPEC", action="append", default=[],
                   help="drive another channel: an optimizer field, batch, or loss.TERM, e.g. --set "
                        "weight_decay=\"linear(peak=0.1)\" --set batch=\"ramp(32, 256, '30%%')\"")
    r.add_argument("--steps", type=common.positive_int, help="the horizon in optimizer steps (default: the workload's)")
    r.add_argument("--horizon", metavar="DURATION", help="the horizon in the plan's unit or as a duration ('2Mtok')")
    r.add_argument("--unit", choices=["step", "sample", "token"], help="the clock the plan is defined on (step)")
    r.add_argument("--micro-batch", type=common.positive_int, metavar="N",
                   help="samples per forward/backward; the batch is accumulated from micro-batches")
    r.add_argument("--skip-nonfinite", action="store_true", default=None,
                   help="guard: skip a step whose loss or gradient is not finite (the clock does not move)")
    r.add_argument("--guard", metavar="NAME[:KEY=VALUE,...]", action="append", default=[],
                   help="a guard of the plan (docs/guards.md): loss_spike, grad_spike or rollback, e.g. --guard "
                        "loss_spike --guard loss_spike:sigma=5,window=64 --guard rollback:spikes=3; repeat")
    r.add_argument("--seed", type=int)
    r.add_argument("--out", required=True, metavar="DIR", help="run folder")
    r.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    r.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    r.add_argument("--forecast", metavar="LAW.json",
                   help="a law written by 'cadence forecast fit': say its predicted final loss before the run and log "
                        "its prediction at every step in metrics.csv (column forecast); a resumed run keeps it")
    r.add_argument("--tensorboard", metavar="DIR",
                   help="also write every metrics.csv row as TensorBoard scalars into DIR (pip install "
                        "'cadence[tensorboard]'); a resumed run may log elsewhere")
    r.add_argument("--init", metavar="RUN", help="continual pre-training: start from the weights of a finished run "
                   "(same model and size), on this run's data and plan; run.json records the stability gap")
    r.add_argument("--init-optimizer", action="store_true", default=None,
                   help="with --init: take the finished run's optimizer state too (moments, step counts)")
    r.add_argument("--dense-eval", metavar="EVERY:UNTIL",
                   help="also evaluate every EVERY steps during the first UNTIL steps (default with --init: "
                        "eval_every // 10 for 2 * eval_every steps)")
    r.add_argument("--difficulty", metavar="SCORE",
                   help="what a curriculum channel orders the data by: length, reference=RUN, or column=FILE.csv:NAME")
    _add_training(r)
    r.add_argument("--checkpoint-every", type=common.positive_int, metavar="K", help="steps between checkpoints (100)")
    r.set_defaults(handler=_guarded(_cmd_run))

    b = common.command(sub, "bench", "compare candidate schedules over seeds on one workload and write a report")
    b.add_argument("workload", help="tiny-lm, text, digits, digits-cnn or logreg")
    b.add_argument("--data", metavar="DIR", help="text: the corpus folder of every run, one subfolder per domain "
                   "(default: three domains from the standard library)")
    b.add_argument("--candidate", metavar="NAME=SPEC", action="append", default=[],
                   help="a candidate to compare: an LR schedule, or a plan file (NAME=plan.yaml: its channels, unit, "
                        "horizon and run settings); repeat")
    b.add_argument("--plan", metavar="NAME=SPEC", dest="candidate", action=_DeprecatedAppend,
                   help="deprecated alias of --candidate (will be removed)")
    b.add_argument("--quick", action="store_true",
                   help="tiny-lm only: cosine, linear, WSD (1-sqrt, 20%%) and REX at the same horizon, in minutes")
    b.add_argument("--seeds", type=common.positive_int, help="seeds per candidate (default 3; --quick: 1)")
    b.add_argument("--steps", type=common.positive_int,
                   help="the horizon, in optimizer steps, of every run (default: the plan files', else the workload's)")
    b.add_argument("--horizon", metavar="DURATION",
                   help="the horizon of every run in --unit or as a duration ('2Mtok', '64Ksa')")
    b.add_argument("--unit", choices=["step", "sample", "token"],
                   help="the clock every run counts (default: the plan files', else step)")
    b.add_argument("--micro-batch", type=common.positive_int, metavar="N",
                   help="samples per forward/backward; a batch is accumulated from micro-batches")
    b.add_argument("--out", metavar="DIR", help="comparison folder (default: out/bench-WORKLOAD)")
    b.add_argument("--jobs", type=common.positive_int, default=1, help="runs in parallel processes")
    b.add_argument("--baseline", metavar="NAME", help="candidate to compare against (default: the first)")
    b.add_argument("--target", type=float, help="target validation loss (default: the baseline's final loss)")
    b.add_argument("--set", metavar="CHANNEL=SPEC", action="append", default=[],
                   help="drive another channel (an optimizer field, batch, loss.TERM) the same way in every candidate")
    b.add_argument("--overwrite", action="store_true", help="replace a comparison with other settings in --out")
    _add_training(b)
    b.set_defaults(handler=_guarded(_cmd_bench))

    rp = common.command(sub, "report", "rewrite the report of a comparison folder",
                        "examples:\n  cadence bench digits --candidate cos=\"cosine(peak=3e-3)\" --seeds 3 --out cmp\n"
                        "  cadence report cmp      # rewrite cmp/report.md from its runs\n")
    rp.add_argument("folder")
    rp.set_defaults(handler=_guarded(_cmd_report))


class _DeprecatedAppend(argparse._AppendAction):
    """An old flag that still works: appends to its new flag's list (in command-line order) and records that it
    was used, so that the command can say so."""

    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        setattr(namespace, "deprecated_flags", [*getattr(namespace, "deprecated_flags", []), option_string])


_BENCH_PLAN = "bench --plan is now --candidate; --plan will be removed"


def _add_training(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", help="model size (see 'cadence workloads')")
    p.add_argument("--batch-size", type=common.positive_int)
    p.add_argument("--optimizer", choices=["adamw", "sgd"])
    p.add_argument("--weight-decay", type=float, help="base weight decay (default: the workload's)")
    p.add_argument("--eval-every", type=common.positive_int, metavar="K", help="steps between validation measurements")
    p.add_argument("--threads", type=common.positive_int, help="torch threads per run")
    p.add_argument("--device", help="cpu (default) or cuda[:N]")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress on stderr (by default: a bar on a terminal, else a line every 5%% of a run)")


def _fields(items: list[str]) -> dict[str, "str | float"]:
    """--set CHANNEL=SPEC items; a plain number is a constant (``--set batch=128``)."""
    numbers = {}
    rest = []
    for item in items:
        name, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            rest.append(item)
            continue
        if not sep or not name.strip() or name.strip() in numbers:
            rest.append(item)
            continue
        numbers[name.strip()] = int(number) if number.is_integer() else number
    fields = common.parse_named(rest, "--set", "CHANNEL=SPEC, e.g. weight_decay=\"linear(peak=0.1)\"")
    for name, value in numbers.items():
        if name in fields:
            raise CadenceError(f"--set: name {name!r} is given twice")
        fields[name] = value
    if "lr" in fields:
        raise CadenceError("use --lr for the learning rate, not --set lr=...")
    return fields


def _torch_extra():
    try:
        import torch  # noqa: F401
    except ImportError:
        raise CadenceError("training needs torch: pip install -c constraints.txt 'cadence[bench]'") from None


def _show(text) -> str:
    """A path or name as printable text (an undecodable byte of a file name is shown escaped)."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


def _guarded(handler):
    """File-system failures (permission, disk full, a name too long) end as one line, exit 2, like bad input."""
    @functools.wraps(handler)
    def run(args):
        for name in ("out", "folder"):
            value = getattr(args, name, None)
            flag = "--out" if name == "out" else "FOLDER"
            if isinstance(value, str) and "\x00" in value:
                raise CadenceError(f"{flag} contains a NUL character")
            if isinstance(value, str) and not value.strip():
                raise CadenceError(f"{flag} is empty; name a folder")
        try:
            return handler(args)
        except BrokenPipeError:
            raise  # `cadence report x | head`: main() ends it quietly
        except OSError as e:
            where = f"{_show(e.filename)}: " if e.filename else ""
            raise RunError(f"{where}{e.strerror or type(e).__name__}") from None
    return run


def _warn(message: str) -> None:
    print(f"cadence: warning: {_show(message)}", file=sys.stderr)


def _cmd_workloads() -> None:
    _torch_extra()
    from cadence.bench.workloads import WORKLOADS

    for name, cls in WORKLOADS.items():
        w = cls()
        print(f"{name}: {w.description}")
        print(f"    sizes: {', '.join(w.sizes)} (default {w.default_size}); batch {w.batch_size} (at most "
              f"{w.max_batch_size}); default {w.default_steps} steps; eval every {w.eval_every}")
        print(f"    default lr: {w.default_lr}; weight decay {w.weight_decay}; clip {w.clip}")


def _cmd_run(args) -> int:
    _torch_extra()
    from cadence.bench.logs import auto_progress
    from cadence.bench.runner import RunConfig, train
    from cadence.bench.workloads import data_progress, get_workload

    progress = None if args.no_progress else auto_progress()
    if args.workload is None:
        if not args.resume:
            raise CadenceError("name a WORKLOAD (tiny-lm, text, digits, digits-cnn, logreg), or pass --resume --out DIR")
        given = [name for name in (*_SETTINGS, "seed", "optimizer") if getattr(args, name) not in (None, [])]
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise CadenceError(f"a resumed run keeps its own settings: drop {flags}, or name the WORKLOAD with all the "
                               "run's settings to check them")
        config = RunConfig(workload="", channels={}, horizon=0)  # everything comes from the run's manifest
    else:
        try:
            config = _run_config(args)
            with data_progress(progress if os.environ.get("RANK", "0") == "0" else None):  # tiny-lm reads its data
                config.resolved()  # every setting checked before the run folder is touched
        except CadenceError as e:
            raise _where(e, args) from None
    try:
        manifest = train(config, args.out, resume=args.resume, overwrite=args.overwrite, progress=progress,
                         threads=args.threads, warn=_warn, tensorboard=args.tensorboard,
                         say=lambda message: print(_show(message), flush=True))
    except CadenceError as e:
        if e.field != "forecast":
            raise
        raise _where(e, args) from None
    if os.environ.get("RANK", "0") != "0":
        return 0  # torchrun: rank 0 reports for all
    from cadence.bench.report import load_metrics

    m = load_metrics(f"{args.out}/metrics.csv")
    forecast = f" (forecast {m['forecast'][-1]:.4f})" if "forecast" in m else ""
    print(f"{manifest['config']['workload']} seed {manifest['config']['seed']}: {manifest['status']} at step "
          f"{manifest['step']}; final train loss {m['train_loss'][-1]:.4f}, val loss {m['val_loss'][-1]:.4f}{forecast}; "
          f"{manifest.get('train_seconds', 0):.1f}s training")
    print(f"metrics: {_show(args.out)}/metrics.csv")
    if args.tensorboard is not None:
        print(f"tensorboard: {_show(args.tensorboard)}")
    return 0


def _run_config(args):
    """The RunConfig that the flags, and the plan file if one is given, describe."""
    from cadence.bench.runner import RunConfig
    from cadence.bench.workloads import get_workload
    from cadence.plan import read_plan_file

    w = get_workload(args.workload)
    settings = {"data": args.data, "seed": args.seed, "size": args.size, "batch_size": args.batch_size, "micro_batch": args.micro_batch,
                "optimizer": args.optimizer, "weight_decay": args.weight_decay, "eval_every": args.eval_every,
                "checkpoint_every": args.checkpoint_every, "skip_nonfinite": args.skip_nonfinite, "device": args.device,
                "tensorboard": args.tensorboard, "forecast": args.forecast, "init": args.init,
                "init_optimizer": args.init_optimizer, "dense_eval": _dense_eval(args.dense_eval),
                "difficulty": args.difficulty}
    guards = _guards(args.guard)
    if args.plan is not None:
        clash = [f for f, v in (("--lr", args.lr), ("--set", args.set), ("--steps", args.steps),
                                ("--horizon", args.horizon), ("--unit", args.unit), ("--guard", args.guard))
                 if v not in (None, [])]
        if clash:
            raise CadenceError(f"the plan file gives the channels, unit and horizon: drop {', '.join(clash)} "
                               "or drop --plan")
        data = read_plan_file(args.plan, tuple(_FILE_SETTINGS))
        if data.get("workload", args.workload) != args.workload:
            raise CadenceError(f"the plan file is for workload {str(data['workload'])[:40]!r}, not {args.workload!r}")
        for key, flag in _FILE_SETTINGS.items():
            if flag and key in data and settings[key] is not None:
                raise CadenceError(f"{flag} and the plan file's {key} both set it; keep one")
            if key in data and key != "workload":
                settings[key] = data[key]
        channels = dict(data["channels"])
        guards = data.get("guards")
        unit, horizon = data.get("unit", "step"), data.get("horizon")
        if horizon is None:
            if unit != "step":
                raise CadenceError(f"the plan file counts {unit}s: give its horizon")
            horizon = w.default_steps
    else:
        channels = {"lr": parse(args.lr or w.default_lr).spec(), **_fields(args.set)}
        unit = args.unit or "step"
        if args.steps is not None and args.horizon is not None:
            raise CadenceError("--steps and --horizon both set the run's length; keep one")
        if args.steps is not None and unit != "step":
            raise CadenceError(f"--steps counts optimizer steps but the plan counts {unit}s: give --horizon")
        horizon = args.steps or (_horizon(args.horizon) if args.horizon is not None else None)
        if horizon is None:
            if unit != "step":
                raise CadenceError(f"a plan on a {unit} clock needs --horizon, such as '2Mtok' or '64Ksa'")
            horizon = w.default_steps
    board = settings.pop("tensorboard")  # where to log, not how to train: it goes to train(), never to RunConfig
    if board is not None and (not isinstance(board, str) or not board.strip()):
        where = "--tensorboard" if args.tensorboard is not None else f"{_show(args.plan)}: tensorboard"
        raise CadenceError(f"{where} must name a folder; got {str(board)[:60]!r}")
    args.tensorboard = board
    law = settings["forecast"]  # a law file's path: RunConfig.forecast loads it (cadence.forecast.load)
    if law is not None and (not isinstance(law, str) or not law.strip()):
        where = "--forecast" if args.forecast is not None else f"{_show(args.plan)}: forecast"
        raise CadenceError(f"{where} must name a law file (written by 'cadence forecast fit'); got {str(law)[:60]!r}")
    folder = settings["data"]
    if folder is not None and (not isinstance(folder, str) or not folder.strip()):
        where = "--data" if args.data is not None else f"{_show(args.plan)}: data"
        raise CadenceError(f"{where} must name a folder of domains; got {str(folder)[:60]!r}")
    defaults = {"seed": 0, "optimizer": "adamw", "checkpoint_every": 100, "skip_nonfinite": False, "device": "cpu",
                "init_optimizer": False}
    settings = {k: (defaults[k] if v is None and k in defaults else v) for k, v in settings.items()}
    return RunConfig(workload=args.workload, channels=channels, horizon=horizon, unit=unit, guards=guards, **settings)


def _dense_eval(text: "str | None") -> "list[int] | None":
    """--dense-eval EVERY:UNTIL as [every, until]."""
    if text is None:
        return None
    import re

    found = re.fullmatch(r"\s*(\d{1,10})\s*:\s*(\d{1,10})\s*", text, flags=re.ASCII)
    if found is None:
        raise CadenceError(f"--dense-eval expects EVERY:UNTIL, two whole numbers of steps such as 5:200; got {text!r}")
    return [int(found.group(1)), int(found.group(2))]


def _guards(items: list[str]) -> "dict | None":
    """--guard NAME[:KEY=VALUE,...] items as a plan's guards mapping (values: whole numbers, numbers or text)."""
    out: dict = {}
    for item in items:
        name, _, rest = item.partition(":")
        name = name.strip()
        if not name:
            raise CadenceError(f"--guard expects NAME[:KEY=VALUE,...], e.g. loss_spike:sigma=5; got {item!r}")
        if name in out:
            raise CadenceError(f"--guard: {name!r} is given twice; give its settings once, comma-separated")
        settings = {}
        for pair in filter(None, (p.strip() for p in rest.split(","))):
            key, sep, value = pair.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise CadenceError(f"--guard {name}: settings are KEY=VALUE, comma-separated; got {pair!r}")
            value = value.strip()
            try:
                settings[key.strip()] = int(value)
            except ValueError:
                try:
                    settings[key.strip()] = float(value)
                except ValueError:
                    settings[key.strip()] = value
        out[name] = settings
    return out or None


def _where(error: CadenceError, args) -> CadenceError:
    """A run's setting error, said with where the setting came from: the flag given or the plan file."""
    field = error.field
    if field in ("horizon", "unit"):
        source = args.plan or {"horizon": "--steps" if args.steps is not None else "--horizon", "unit": "--unit"}[field]
    elif field in ("channels", "batch", "lr", "micro_batch", "plan", "tokens_per_sample", "rates", "guards"):
        source = args.plan or {"micro_batch": "--micro-batch", "guards": "--guard"}.get(field)  # the message names the channel
    elif field in ("data", "init", "init_optimizer", "dense_eval", "difficulty"):  # the flag, or the plan file's key
        flag = "--" + field.replace("_", "-")
        given = getattr(args, field.replace("-", "_"), None) is not None
        source = flag if given else (f"{args.plan}: {field}" if args.plan else None)
    elif field == "forecast":  # the flag, the plan file's key, or neither (a resume: run.json's law)
        source = "--forecast" if args.forecast is not None else (f"{args.plan}: forecast" if args.plan else None)
    else:
        return error
    if type(error).__init__ is not CadenceError.__init__:
        return error
    message = " ".join(str(error).split())
    return type(error)(f"{source}: {message}" if source and not message.startswith(str(source)) else message)


def _horizon(text: str):
    """--horizon: a whole number (in the plan's unit) or a duration string."""
    return int(text) if text.strip().isdigit() else text


def _cmd_bench(args) -> None:
    _torch_extra()
    from cadence.bench.compare import QUICK, BenchConfig, run_bench
    from cadence.bench.workloads import get_workload

    w = get_workload(args.workload)
    if args.quick:
        if args.workload != QUICK["workload"]:
            raise CadenceError(f"--quick is defined for {QUICK['workload']} only")
        if args.candidate:
            raise CadenceError("--quick brings its own candidates; drop --candidate or drop --quick")
        candidates = dict(QUICK["candidates"])
        defaults = QUICK
    else:
        candidates = _bench_candidates(args.candidate)
        if not candidates:
            raise CadenceError("give at least one --candidate NAME=SPEC (or --quick for tiny-lm)")
        defaults = {}
    plans = {name: c for name, c in candidates.items() if isinstance(c, dict)}
    if args.data is not None and not args.data.strip():
        raise CadenceError(f"--data must name a folder of domains; got {args.data!r}")
    data = None if args.data is None else os.path.abspath(args.data)  # bench.json records where, wherever it is read
    _bench_clashes(args, plans)
    if any(item.partition("=")[0].strip() == "lr" for item in args.set):
        raise CadenceError("--set: the learning rate is each candidate's own; give it with --candidate")
    steps, unit, horizon = _bench_clock(args, plans, defaults.get("steps") or w.default_steps)
    config = BenchConfig(
        workload=args.workload, candidates=candidates, steps=steps, unit=unit, horizon=horizon,
        micro_batch=args.micro_batch,
        seeds=args.seeds or defaults.get("seeds") or 3,
        size=args.size or defaults.get("size"), batch_size=args.batch_size, optimizer=args.optimizer or "adamw",
        weight_decay=args.weight_decay, eval_every=args.eval_every or defaults.get("eval_every"),
        device=args.device or "cpu", channels=_fields(args.set), baseline=args.baseline or defaults.get("baseline"),
        target=args.target, data=data,
    )
    out = args.out or f"out/bench-{args.workload}" + ("-quick" if args.quick else "")
    # `--plan` says it is deprecated once the comparison has accepted its input (run_bench logs or warns before
    # any run starts), so that input it refuses still ends in one line, the error.
    notices = [_BENCH_PLAN] if getattr(args, "deprecated_flags", None) else []

    def notice() -> None:
        while notices:
            _warn(notices.pop())

    def log(msg: str) -> None:
        notice()
        if not args.no_progress:
            print(_show(msg), file=sys.stderr)

    def warn(msg: str) -> None:
        notice()
        _warn(msg)

    try:
        result = run_bench(config, out, jobs=args.jobs, overwrite=args.overwrite, progress=not args.no_progress,
                           log=log, threads=args.threads, warn=warn)
    except CadenceError as e:
        raise _bench_where(e, args) from None
    notice()
    print(result["table"])
    print(f"\nreport: {_show(result['report'])}")


def _bench_candidates(items: list[str]) -> dict:
    """--candidate NAME=SPEC or NAME=FILE items: {name: normalised LR spec, or the plan file's candidate record}."""
    from cadence.bench.compare import is_plan_file, plan_candidate

    out: dict = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name or not value.strip():
            raise CadenceError(f"--candidate expects NAME=SPEC or NAME=PLAN.yaml, e.g. cos=\"cosine(peak=1e-3)\"; "
                               f"got {item!r}")
        if name in out:
            raise CadenceError(f"--candidate: name {name!r} is given twice")
        if not is_plan_file(value):
            out[name] = parse(value).spec()
            continue
        try:
            out[name] = plan_candidate(value.strip())
        except CadenceError as e:
            if type(e).__init__ is not CadenceError.__init__:
                raise
            raise type(e)(f"--candidate {name}: {' '.join(str(e).split())}") from None
    return out


# The comparison's settings that a plan file may also hold, and the flag that sets each.
_BENCH_SHARED_FLAGS = {"size": "--size", "batch_size": "--batch-size", "micro_batch": "--micro-batch",
                       "optimizer": "--optimizer", "weight_decay": "--weight-decay", "eval_every": "--eval-every",
                       "device": "--device"}


def _bench_clashes(args, plans: dict) -> None:
    """A flag and a plan-file candidate that set the same thing to different values: one line naming both."""
    unit = args.unit or ("step" if args.steps is not None else None)
    for name, plan in plans.items():
        where = f"candidate {name}'s plan file {_show(plan['file'])}"
        theirs = plan.get("unit") or ("step" if plan.get("horizon") is not None else None)
        if unit is not None and theirs is not None and theirs != unit:
            flag = f"--unit {unit}" if args.unit else "--steps (a step clock)"
            raise CadenceError(f"{flag} and {where} (which counts {theirs}s) contradict each other; keep one clock")
        for key, flag in _BENCH_SHARED_FLAGS.items():
            mine = getattr(args, key)
            if mine is not None and key in plan and plan[key] != mine:
                raise CadenceError(f"{flag} {mine} and {where}'s {key} {str(plan[key])[:40]} contradict each other; "
                                   "keep one")
        theirs = plan.get("data")
        if args.data is not None and theirs is not None and (
                not isinstance(theirs, str) or os.path.abspath(theirs) != os.path.abspath(args.data)):
            raise CadenceError(f"--data {_show(args.data)} and {where}'s data {_show(str(theirs)[:120])} name different "
                               "folders; keep one")


def _bench_clock(args, plans: dict, default_steps: int):
    """(steps, unit, horizon) of the comparison from --steps, --horizon and --unit; what they leave out comes from
    the plan files, else a step clock of ``default_steps``."""
    if args.steps is not None and args.horizon is not None:
        raise CadenceError("--steps and --horizon both set the comparison's length; keep one")
    if args.steps is not None and args.unit not in (None, "step"):
        raise CadenceError(f"--steps counts optimizer steps but --unit is {args.unit}: give --horizon")
    steps, unit = args.steps, args.unit
    horizon = args.horizon
    if horizon is not None and horizon.strip().isdigit():
        horizon = int(horizon)  # a whole number of the clock's units (0 is refused as a horizon, below)
    from_plans = any(p.get("unit") is not None or p.get("horizon") is not None for p in plans.values())
    if steps is None and isinstance(horizon, int) and horizon > 0 and (unit == "step" or (unit is None and not from_plans)):
        steps, horizon = horizon, None  # --horizon N on a step clock is --steps N
    if steps is None and horizon is None and unit in (None, "step") and not from_plans:
        steps = default_steps
    return steps, (None if steps is not None else unit), horizon


def _bench_where(error: CadenceError, args) -> CadenceError:
    """A comparison's setting error, said with the flag that gave the setting (the library names its fields)."""
    field = error.field
    flags = {"horizon": "--steps" if args.steps is not None else "--horizon",
             "steps": "--steps", "unit": "--unit" if args.unit else None,
             "micro_batch": "--micro-batch" if args.micro_batch is not None else None, "batch": "--set",
             "data": "--data" if args.data is not None else None}
    if field not in flags or type(error).__init__ is not CadenceError.__init__:
        return error
    message = " ".join(str(error).split())
    flag = flags[field]
    return type(error)(f"{flag}: {message}" if flag and not message.startswith(flag) else message)


def _cmd_report(args) -> None:
    from cadence.bench.report import write_report

    result = write_report(args.folder)
    print(result["table"])
    print(f"\nreport: {_show(result['report'])}")
