"""``cadence schedule``, ``cadence list``, ``cadence gallery``: look at schedules before training."""

from __future__ import annotations

import sys

from cadence.cli import common
from cadence.errors import CadenceError, LimitError
from cadence.schedules import parse
from cadence.schedules.limits import MAX_TOTAL_STEPS, MAX_VALUES
from cadence.time import Unit


def register(sub) -> None:
    p = common.command(sub, "schedule", "print or plot one schedule, or every channel of a plan file")
    p.add_argument("spec", metavar="SPEC", nargs="?", help="a schedule call, e.g. \"cosine(peak=3e-4, warmup=200)\"")
    p.add_argument("--plan", metavar="FILE", help="preview every channel of a plan file (.yaml/.json) on its clock")
    p.add_argument("--total", type=common.positive_int, help="optimizer steps in the run (a plan has its horizon)")
    p.add_argument("--csv", action="store_true", help="print step,value rows")
    p.add_argument("--plot", metavar="PATH", help="draw the schedule to a .png/.pdf/.svg file")
    p.add_argument("--unit", default="st", choices=["st", "sa", "tok", "ep", "dur"],
                   help="second x axis of the plot (needs the matching rates)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing plot file")
    p.add_argument("--domains", metavar="A,B,...", help="--plan: the run's domains, for a mixture driven by a mixer "
                   "(a mixture of weights per domain names its own)")
    common.add_rates(p)
    p.set_defaults(handler=_cmd_schedule)

    common.command(sub, "list", "list schedule families and combinators with their parameters",
                   "examples:\n  cadence list\n  cadence list | grep -A2 '^  wsd'\n").set_defaults(handler=lambda args: _cmd_list())

    g = common.command(sub, "gallery", "draw every family in one figure",
                       "examples:\n  cadence gallery\n  cadence gallery --out families.svg --total 5000 --overwrite\n")
    g.add_argument("--out", default="gallery.png", help="figure path (default: gallery.png)")
    g.add_argument("--total", type=common.positive_int, default=1000, help="steps per panel (default: 1000)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing file")
    g.set_defaults(handler=_cmd_gallery)


def _cmd_schedule(args) -> None:
    if args.plan is not None:
        return _cmd_plan(args)
    if args.spec is None:
        raise CadenceError("give a SPEC (a schedule call) or --plan FILE")
    if args.total is None:
        raise CadenceError("--total is required with a SPEC: the number of optimizer steps in the run")
    schedule = parse(args.spec)
    rates = common.rates(args)
    if args.total > MAX_TOTAL_STEPS:
        raise LimitError(f"at most {MAX_TOTAL_STEPS} (2**53) steps are counted exactly; got {args.total}", field="total")
    if args.csv and args.total > MAX_VALUES:
        raise LimitError(f"--csv prints one row per step, at most {MAX_VALUES} rows; --total is {args.total} "
                         "(the summary and --plot take any length)")
    schedule.bind(args.total, rates)  # refuse a run the schedule does not fit before printing anything
    if args.csv:
        out = sys.stdout
        out.write("step,value\n")
        for lo, values in schedule.chunks(args.total, rates):  # bounded memory for any length
            out.write("".join(f"{i},{v!r}\n" for i, v in enumerate(values.tolist(), lo)))
    if args.plot:
        from cadence.plotting import plot_schedule

        path = plot_schedule(schedule, args.total, args.plot, rates=rates, unit=Unit(args.unit), overwrite=args.overwrite)
        _say(f"wrote {path}", sys.stderr if args.csv else sys.stdout)
    if not args.csv and not args.plot:
        s = schedule.summary(args.total, rates)
        print(schedule.spec())
        print(f"steps: {args.total}   first: {s['first']:.6g}   max: {s['max']:.6g} (step {s['argmax']})   "
              f"last: {s['last']:.6g}   mean: {s['mean']:.6g}")
        if s["sampled"]:
            print(f"(max and mean of {s['sampled']:,} evenly spaced steps: the run is longer than {MAX_VALUES:,} steps)")
        print("(add --csv for every step, --plot PATH for a figure)")


def _cmd_plan(args) -> None:
    """Every channel of a plan file over its horizon, on its clock, before any observation."""
    from cadence.plan import Plan, read_plan_file
    from cadence.time import Rates

    if args.spec is not None or args.total is not None:
        raise CadenceError("a plan file has its channels and horizon: drop SPEC and --total, or drop --plan")
    rates = common.rates(args)
    domains = _domains(args.domains, None) if args.domains is not None else None  # a bad flag is the flag's fault
    try:
        data = read_plan_file(args.plan, common.PLAN_FILE_SETTINGS)
        if rates.samples_per_step is None and isinstance(data.get("batch_size"), int) \
                and not isinstance(data["batch_size"], bool):
            rates = Rates(samples_per_step=data["batch_size"], tokens_per_sample=rates.tokens_per_sample,
                          steps_per_epoch=rates.steps_per_epoch)
        plan = Plan(data["channels"], horizon=data.get("horizon"), unit=data.get("unit", "step"), rates=rates,
                    micro_batch=data.get("micro_batch") if "batch" in data["channels"] else None,
                    domains=domains or _domains(None, data["channels"].get("mixture")))
        preview = plan.preview()
    except CadenceError as e:
        rate = e.field in ("samples_per_step", "tokens_per_sample", "steps_per_epoch")  # flags this command has
        message = str(e) if str(e).startswith(("the plan file", "cannot read the plan file", "a plan file")) \
            else f"{args.plan}: {e}"
        if "needs the run's domains" in message:
            message += "; name them with --domains"
        raise type(e)(message, field=e.field if rate else None) from None
    # a weight per key (mixture, a bandit curriculum) is one column per key: mixture/code, ...
    channels = [c if k is None else f"{c}/{k}" for c in plan.schedules
                for k in (plan.schedules[c].keys if getattr(plan.schedules[c], "vector", False) else (None,))]
    unit = {Unit.STEP: "step", Unit.SAMPLE: "sample", Unit.TOKEN: "token"}[plan.unit]
    if args.csv:
        out = sys.stdout
        columns = ["step", "samples", "tokens", *channels]
        out.write(",".join(columns) + "\n")
        arrays = [preview[c].tolist() for c in columns]
        for lo in range(0, len(arrays[0]), 65536):
            out.write("".join(",".join(repr(a[i]) for a in arrays) + "\n" for i in range(lo, min(lo + 65536, len(arrays[0])))))
    if args.plot:
        from cadence.plotting import plot_plan

        path = plot_plan(preview, channels, unit, args.plot, overwrite=args.overwrite)
        _say(f"wrote {path}", sys.stderr if args.csv else sys.stdout)
    if not args.csv and not args.plot:
        steps = preview["step"].size
        print(f"plan on a {unit} clock, horizon {plan.horizon} {unit}s: {steps} optimizer steps")
        width = max(len(c) for c in channels)
        for c in channels:
            v = preview[c]
            name = c.split("/")[0]
            spec = plan.schedules[name].spec() if c == name or c.endswith("/" + plan.schedules[name].keys[0]) else '"'
            print(f"  {c:{width}s}  first {v[0]:.6g}  max {v.max():.6g} (step {int(v.argmax())})  last {v[-1]:.6g}  "
                  f"{spec}")
        if plan.monitors:
            print("controllers shown as they start; they read: " + ", ".join(
                f"{sig} ({', '.join(chs)})" for sig, chs in plan.monitors.items()))
        print("(add --csv for every step, --plot PATH for a figure)")


def _domains(flag: "str | None", mixture) -> "tuple[str, ...] | None":
    """--domains A,B,... or, without it, the domains a mixture of weights per domain names."""
    if flag is not None:
        names = tuple(n.strip() for n in flag.split(","))
        if len(names) < 2 or not all(names) or len(set(names)) != len(names):
            raise CadenceError(f"--domains expects two or more distinct names, comma-separated; got {flag!r}")
        return names
    if isinstance(mixture, dict):
        return tuple(str(d) for d in mixture)
    if isinstance(mixture, str) and mixture.strip().startswith("mix("):
        from cadence.schedules import parse

        return parse(mixture).keys
    return None


def _say(text: str, stream) -> None:
    """print, with characters the stream cannot encode (a file name's stray bytes) escaped."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    print(text.encode(encoding, "backslashreplace").decode(encoding, "replace"), file=stream)


def _cmd_list() -> None:
    from cadence.schedules import entries

    for title, classes in (("families", entries("family")), ("combinators", entries("combinator")),
                           ("controllers (keep state, observe signals; outermost in a spec)", entries("controller"))):
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

    _say(f"wrote {gallery(args.out, args.total, overwrite=args.overwrite)}", sys.stdout)
