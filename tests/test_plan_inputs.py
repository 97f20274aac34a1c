"""Issue 10 §7: a plan the run cannot carry out is refused before any training step (docs/plans.md, "Errors").

Every case goes through the command line (``cadence run``, in process): exit status 2, one line
on stderr that names what is wrong and what is allowed, nothing on stdout, no traceback, and
nothing left on disk (a refused new run does not even create its --out folder; a refused resume
changes no file of the run). Plan files hold small horizons, so that a case cadence wrongly
accepts ends in a second instead of a long run.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from cadence import Plan, Rates
from cadence.bench.runner import RunConfig, train
from cadence.cli import main
from cadence.errors import PlanError

PLAN_LR = "cosine(peak=0.01)"


def _refused(argv: list[str], capsys, out: Path, want: tuple[str, ...], absent: tuple[str, ...] = (),
             before: dict | None = None) -> str:
    """Run `cadence run ARGV --out OUT`; check every rule and report all that fail at once."""
    code = main(["run", *argv, "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    err = captured.err
    problems = []
    if code != 2:
        problems.append(f"exit {code}, not 2")
    if not (err.startswith("cadence: error: ") and err.count("\n") == 1) or "Traceback" in err:
        problems.append("not one 'cadence: error:' line")
    if captured.out:
        problems.append(f"stdout {captured.out[:80]!r}")
    problems += [f"does not name {w!r}" for w in want if w not in err]
    problems += [f"names {a!r}" for a in absent if a in err]
    if before is None:
        if os.path.lexists(out):
            problems.append(f"left {out.name}/ behind, holding {sorted(os.listdir(out)) if out.is_dir() else 'a file'}")
    elif _files(out) != before:
        problems.append("changed the run's files")
    assert not problems, f"{'; '.join(problems)}: {err!r}"
    return err


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _plan_file(tmp_path: Path, name: str, text: "str | bytes") -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def _yaml(channels: dict, **settings) -> str:
    lines = [f"{k}: {v}" for k, v in settings.items()] + ["channels:"]
    lines += [f"  {name}: {json.dumps(spec)}" for name, spec in channels.items()]
    return "\n".join(lines) + "\n"


# (id, workload, plan file text, what the line must name, what it must not name)
PLAN_FILE_CASES = [
    # an unknown channel
    ("optimizer field typo (adamw)", "digits", _yaml({"lr": PLAN_LR, "momentun": 0.9}, horizon=2),
     ("momentun", "plan.yaml", "weight_decay"), ()),
    ("optimizer field typo (sgd)", "digits", _yaml({"lr": PLAN_LR, "momentun": 0.9}, horizon=2, optimizer="sgd"),
     ("momentun", "plan.yaml", "momentum"), ()),
    ("momentum on adamw", "digits", _yaml({"lr": PLAN_LR, "momentum": 0.9}, horizon=2),
     ("momentum", "plan.yaml", "beta1"), ()),
    ("loss term tiny-lm lacks", "tiny-lm", _yaml({"lr": PLAN_LR, "loss.q": 0.1}, horizon=2, size="xs"),
     ("loss.q", "loss.z", "plan.yaml"), ()),
    ("loss term on digits", "digits", _yaml({"lr": PLAN_LR, "loss.z": 0.1}, horizon=2),
     ("loss.z", "none", "plan.yaml"), ()),
    ("channel name that is no name", "digits", _yaml({"lr": PLAN_LR, "1abc": 0.1}, horizon=2),
     ("1abc", "'lr', 'batch' or 'loss.z'"), ()),
    ("no lr", "digits", _yaml({"weight_decay": 0.1}, horizon=2), ("'lr'", "plan.yaml"), ()),
    # an unknown unit
    ("unit epoch", "digits", _yaml({"lr": PLAN_LR}, unit="epoch", horizon=2),
     ("'epoch'", "'step', 'sample' or 'token'", "plan.yaml"), ()),
    ("unit a number", "digits", _yaml({"lr": PLAN_LR}, unit=3, horizon=2), ("got 3", "'step', 'sample' or 'token'"), ()),
    # an unknown key, with a did-you-mean
    ("key horizn", "digits", _yaml({"lr": PLAN_LR}, horizn=2), ("'horizn'", "did you mean 'horizon'", "allowed:"), ()),
    ("key chanels", "digits", "horizon: 2\nchanels:\n  lr: cosine(peak=0.01)\n",
     ("'chanels'", "did you mean 'channels'", "allowed:"), ()),
    ("key micro-batch", "digits", _yaml({"lr": PLAN_LR}, horizon=2, **{"micro-batch": 16}),
     ("'micro-batch'", "did you mean 'micro_batch'"), ()),
    ("no channels", "digits", "horizon: 2\n", ("no channels", "lr"), ()),
    ("channels not a mapping", "digits", "horizon: 2\nchannels: cosine\n", ("channels must map",), ()),
    ("a workload in the file that is not the command's", "digits", _yaml({"lr": PLAN_LR}, horizon=2, workload="tiny-lm"),
     ("'tiny-lm'", "'digits'"), ()),
    # a batch that is not a whole number of micro-batches
    ("batch 100 of 16", "digits", _yaml({"lr": PLAN_LR, "batch": 100}, horizon=2, micro_batch=16),
     ("100", "16", "plan.yaml"), ("--batch:",)),
    ("ramp from 40 of 16", "digits", _yaml({"lr": PLAN_LR, "batch": "ramp(40, 128, '40%')"}, horizon=2, micro_batch=16),
     ("40", "16", "plan.yaml"), ("--batch:",)),
    ("noise_batch from 64 of 48", "digits",
     _yaml({"lr": PLAN_LR, "batch": "noise_batch(start=64, max=256)"}, horizon=2, micro_batch=48), ("64", "48"), ()),
    ("batch_size 100 of 16", "digits", _yaml({"lr": PLAN_LR}, horizon=2, batch_size=100, micro_batch=16),
     ("100", "16"), ()),
    # a horizon that cannot be reached
    ("horizon 0", "digits", _yaml({"lr": PLAN_LR}, horizon=0), ("horizon", "0", "plan.yaml"), ()),
    ("horizon '0'", "digits", _yaml({"lr": PLAN_LR}, horizon="'0'"), ("horizon", "at least one step"), ()),
    ("horizon 0sa", "digits", _yaml({"lr": PLAN_LR}, unit="sample", horizon="0sa"), ("'0sa'", "at least one sample"), ()),
    ("horizon -3", "digits", _yaml({"lr": PLAN_LR}, horizon=-3), ("-3", "positive"), ()),
    ("horizon 0.5", "digits", _yaml({"lr": PLAN_LR}, horizon=0.5), ("0.5", "whole number"), ()),
    ("horizon 50%", "digits", _yaml({"lr": PLAN_LR}, horizon="'50%'"), ("'50%'", "fraction", "in steps"), ()),
    ("horizon in steps on a token clock whose batch changes", "digits",
     _yaml({"lr": PLAN_LR, "batch": "ramp(32, 128, '40%')"}, unit="token", horizon="100st", micro_batch=32),
     ("horizon=100", "tokens", "batch size changes", "give it in tokens"), ()),
    ("horizon in epochs on a step clock whose batch changes", "digits",
     _yaml({"lr": PLAN_LR, "batch": "ramp(32, 128, '40%')"}, horizon="3ep", micro_batch=32),
     ("3ep", "batch"), ()),
    ("horizon past the step limit", "digits", _yaml({"lr": PLAN_LR}, horizon=10**10),
     ("10000000000", "at most 1000000000"), ()),
    ("horizon past 2**53 samples", "digits", _yaml({"lr": PLAN_LR}, unit="sample", horizon=10**20),
     ("100000000000000000000", "2**53"), ()),
    ("horizon past the step limit as a count", "digits", _yaml({"lr": PLAN_LR}, horizon="2G"), ("at most 1000000000",), ()),
    # a controller that monitors what the run does not produce
    ("plateau on val_acc, tiny-lm", "tiny-lm",
     _yaml({"lr": "plateau(cosine(peak=0.01), monitor='val_acc')"}, horizon=2, size="xs"),
     ("'val_acc'", "val_loss", "plan.yaml"), ()),
    ("noise_batch, one micro-batch per step", "digits",
     _yaml({"lr": PLAN_LR, "batch": "noise_batch(start=64, max=256)"}, horizon=2),
     ("noise", "two micro-batches", "64"), ()),
    ("noise_batch, micro-batch = first batch", "digits",
     _yaml({"lr": PLAN_LR, "batch": "noise_batch(start=64, max=256)"}, horizon=2, micro_batch=64),
     ("noise", "two micro-batches", "64"), ()),
    ("plateau on noise_g2, one micro-batch per step", "digits",
     _yaml({"lr": "plateau(cosine(peak=0.01), monitor='noise_g2')"}, horizon=2),
     ("'noise_g2'", "micro_batch", "val_loss"), ()),
    # a channel whose spec is bad
    ("spec with a typo", "digits", _yaml({"lr": "cosine(peek=0.01)"}, horizon=2), ("'lr'", "peek", "peak"), ()),
    ("spec that does not parse", "digits", _yaml({"lr": "cosine(peak=0.01"}, horizon=2), ("'lr'", "never closed"), ()),
]


@pytest.mark.parametrize("workload, text, want, absent", [c[1:] for c in PLAN_FILE_CASES],
                         ids=[c[0] for c in PLAN_FILE_CASES])
def test_a_plan_file_the_run_cannot_carry_out_is_one_line(workload, text, want, absent, tmp_path, capsys,
                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    _plan_file(tmp_path, "plan.yaml", text)
    _refused([workload, "--plan", "plan.yaml"], capsys, tmp_path / "run", want, absent)


RAMP = "ramp(32, 128, '40%')"
# (id, argv after `run`, what the line must name, what it must not name)
FLAG_CASES = [
    ("--set optimizer field typo", ["digits", "--set", "momentun=constant(value=0.9)", "--steps", "2"],
     ("momentun", "weight_decay"), ()),
    ("--set loss term tiny-lm lacks", ["tiny-lm", "--size", "xs", "--set", "loss.q=constant(value=0.1)", "--steps", "2"],
     ("loss.q", "loss.z"), ()),
    ("--set loss term on digits", ["digits", "--set", "loss.z=constant(value=0.1)", "--steps", "2"],
     ("loss.z", "none"), ()),
    ("--set channel name that is no name", ["digits", "--set", "1abc=constant(value=1)", "--steps", "2"],
     ("1abc", "'lr', 'batch' or 'loss.z'"), ()),
    ("--unit epoch", ["digits", "--unit", "epoch", "--horizon", "2"], ("'epoch'", "'step', 'sample', 'token'"), ()),
    # the batch: the plain number is the form docs/plans.md uses ("batch=100 with micro_batch=16 is refused")
    ("--set batch=100 --micro-batch 16", ["digits", "--set", "batch=100", "--micro-batch", "16", "--steps", "2"],
     ("100", "16"), ("--batch:",)),
    ("--set batch=constant(100) --micro-batch 16",
     ["digits", "--set", "batch=constant(value=100)", "--micro-batch", "16", "--steps", "2"], ("100", "16"), ("--batch:",)),
    ("--set a ramp from 40 --micro-batch 16",
     ["digits", "--set", "batch=ramp(40, 128, '40%')", "--micro-batch", "16", "--steps", "2"], ("40", "16"), ("--batch:",)),
    ("--batch-size 100 --micro-batch 16", ["digits", "--batch-size", "100", "--micro-batch", "16", "--steps", "2"],
     ("100", "16"), ()),
    ("--batch-size and a batch channel that disagree",
     ["digits", "--batch-size", "64", "--set", f"batch={RAMP}", "--micro-batch", "32", "--steps", "2"],
     ("64", "32", "batch"), ()),
    # the horizon: the user gave --horizon, so the line must not blame --steps
    ("--horizon 0", ["digits", "--horizon", "0"], ("0", "positive"), ("--steps",)),
    ("--horizon 50%", ["digits", "--horizon", "50%"], ("'50%'", "fraction"), ("--steps",)),
    ("--horizon 100st on a token clock whose batch changes",
     ["digits", "--unit", "token", "--set", f"batch={RAMP}", "--micro-batch", "32", "--horizon", "100st"],
     ("horizon=100", "batch size changes", "give it in tokens"), ("--steps",)),
    ("--steps on a token clock", ["digits", "--unit", "token", "--set", f"batch={RAMP}", "--micro-batch", "32",
                                  "--steps", "100"], ("--steps", "tokens", "--horizon"), ()),
    ("--horizon 3ep on a step clock whose batch changes",
     ["digits", "--set", f"batch={RAMP}", "--micro-batch", "32", "--horizon", "3ep"], ("3ep", "batch"), ("--steps",)),
    ("--horizon past the step limit", ["digits", "--horizon", "10000000000"], ("at most 1000000000",), ("--steps",)),
    ("--steps past the step limit", ["digits", "--steps", "10000000000"], ("--steps", "at most 1000000000"), ()),
    ("--steps and --horizon", ["digits", "--steps", "2", "--horizon", "2"], ("--steps", "--horizon"), ()),
    ("a sample clock without a horizon", ["digits", "--unit", "sample"], ("--horizon",), ()),
    # monitors: the user gave --lr, so the line must not blame --set
    ("--lr plateau on val_acc, tiny-lm",
     ["tiny-lm", "--size", "xs", "--lr", "plateau(cosine(peak=0.01), monitor='val_acc')", "--steps", "2"],
     ("'val_acc'", "val_loss"), ("--set",)),
    ("--set noise_batch with one micro-batch per step",
     ["digits", "--set", "batch=noise_batch(start=64, max=256)", "--steps", "2"], ("two micro-batches", "64"), ()),
    ("--set noise_batch, --micro-batch = first batch",
     ["digits", "--set", "batch=noise_batch(start=64, max=256)", "--micro-batch", "64", "--steps", "2"],
     ("two micro-batches", "64"), ()),
]


@pytest.mark.parametrize("argv, want, absent", [c[1:] for c in FLAG_CASES], ids=[c[0] for c in FLAG_CASES])
def test_flags_the_run_cannot_carry_out_are_one_line(argv, want, absent, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _refused(argv, capsys, tmp_path / "run", want, absent)


def test_a_plan_file_that_cannot_be_read_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = _yaml({"lr": PLAN_LR}, horizon=2)
    cases = [
        ("bad.yaml", "channels: [lr: \n", ("'bad.yaml'", "not valid YAML")),
        ("bad.json", '{"channels": ', ("'bad.json'", "not valid JSON")),
        ("list.yaml", "- a\n- b\n", ("'list.yaml'", "holds list", "a mapping with keys unit, horizon, channels")),
        ("scalar.json", "3", ("'scalar.json'", "holds int", "a mapping")),
        ("empty.yaml", "", ("'empty.yaml'", "a mapping")),
        ("string.json", '"channels"', ("'string.json'", "holds str", "a mapping")),
        ("big.yaml", good + "#" * (1 << 20) + "\n", ("'big.yaml'", "larger than 1,048,576 bytes")),
        ("latin.yaml", b"channels:\n  lr: cosine(peak=0.01) \xff\n", ("'latin.yaml'", "not UTF-8")),
        ("plan.txt", good, ("'plan.txt'", ".yaml, .yml or .json")),
        ("code.yaml", "channels: !!python/object/apply:os.system ['echo hi']\n", ("'code.yaml'", "not valid YAML")),
    ]
    for name, text, want in cases:
        _plan_file(tmp_path, name, text)
        _refused(["digits", "--plan", name], capsys, tmp_path / "run", want)
    _refused(["digits", "--plan", "missing.yaml"], capsys, tmp_path / "run", ("'missing.yaml'", "No such file"))
    (tmp_path / "folder.yaml").mkdir()
    _refused(["digits", "--plan", "folder.yaml"], capsys, tmp_path / "run", ("'folder.yaml'", "cannot read"))


@pytest.mark.parametrize("name, text", [
    ("dup.yaml", "horizon: 2\nchannels:\n  lr: cosine(peak=0.01)\n  lr: linear(peak=1.0)\n"),
    ("dup.json", '{"horizon": 2, "channels": {"lr": "cosine(peak=0.01)", "lr": "linear(peak=1.0)"}}'),
    ("dupkey.yaml", "horizon: 2\nhorizon: 3\nchannels:\n  lr: cosine(peak=0.01)\n"),
], ids=["yaml channel", "json channel", "yaml horizon"])
def test_a_plan_file_that_gives_a_key_twice_is_refused(name, text, tmp_path, capsys, monkeypatch):
    """YAML requires unique keys; taking the last one silently runs another plan than the one the reader sees."""
    monkeypatch.chdir(tmp_path)
    _plan_file(tmp_path, name, text)
    key = "horizon" if name == "dupkey.yaml" else "lr"
    _refused(["digits", "--plan", name], capsys, tmp_path / "run", (f"'{name}'", repr(key), "twice"))


@pytest.mark.parametrize("flags", [["--lr", PLAN_LR], ["--steps", "2"], ["--horizon", "2"], ["--unit", "sample"],
                                   ["--set", "weight_decay=constant(value=0.1)"]],
                         ids=["--lr", "--steps", "--horizon", "--unit", "--set"])
def test_a_plan_file_and_the_flags_it_replaces_are_refused_together(flags, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _plan_file(tmp_path, "plan.yaml", _yaml({"lr": PLAN_LR}, horizon=2))
    _refused(["digits", "--plan", "plan.yaml", *flags], capsys, tmp_path / "run", (flags[0], "drop", "--plan"))


def test_a_plan_file_and_a_flag_for_the_same_setting_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _plan_file(tmp_path, "plan.yaml", _yaml({"lr": PLAN_LR}, horizon=2, seed=1, micro_batch=32))
    _refused(["digits", "--plan", "plan.yaml", "--seed", "2"], capsys, tmp_path / "run", ("--seed", "seed", "keep one"))
    _refused(["digits", "--plan", "plan.yaml", "--micro-batch", "16"], capsys, tmp_path / "run",
             ("--micro-batch", "micro_batch", "keep one"))


# -- a resumed run whose checkpoint holds another plan's state ---------------------------------

CLOSED_LOOP = dict(workload="digits", channels={"lr": "plateau(cosine(peak=0.05), patience=1, factor=0.5)",
                                                "batch": "ramp(32, 128, '40%', shape='linear')"},
                   micro_batch=32, eval_every=3, checkpoint_every=5, horizon=3000, unit="sample")


@pytest.fixture(scope="module")
def stopped_closed_loop(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stopped") / "run"
    train(RunConfig(**CLOSED_LOOP), out, stop_after=12, threads=1)  # checkpoint at step 10
    return out


def _set_horizon(plan: dict, horizon: int) -> None:
    plan["horizon"] = horizon
    plan["horizons"][0][1] = horizon


TAMPERED = [
    ("another lr", lambda p: p["channels"].update(lr="cosine(peak=0.05)"), ("cosine(peak=0.05)", "channels", "'lr'")),
    ("no batch channel", lambda p: p["channels"].pop("batch"), ("channels", "'batch'", "this plan has")),
    ("an extra channel", lambda p: p["channels"].update(weight_decay="constant(value=0.1)"),
     ("channels", "'weight_decay'", "this plan has")),
    ("another horizon", lambda p: _set_horizon(p, 4000), ("horizon 4000", "3000")),
    ("another horizon, records kept", lambda p: p.update(horizon=4000), ("horizon",)),
    ("another unit", lambda p: p.update(unit="token"), ("'token'", "samples")),
    ("another format", lambda p: p.update(format="cadence.plan/0"), ("'cadence.plan/0'", "cadence.plan/1")),
    ("a plateau scale above 1", lambda p: p["states"]["lr"]["rule"].update(scale=2.0), ("'lr'", "scale", "2.0")),
    ("a clock at another step", lambda p: p["clock"].update(step=99), ("99", "10")),
]


@pytest.mark.parametrize("tamper, want", [c[1:] for c in TAMPERED], ids=[c[0] for c in TAMPERED])
def test_resuming_from_another_plans_state_is_one_line(tamper, want, stopped_closed_loop, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(stopped_closed_loop, out)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    tamper(state["plan"])
    torch.save(state, out / "checkpoint.pt")
    before = _files(out)
    err = _refused(["--resume"], capsys, out, ("cannot resume", "checkpoint.pt", *want), before=before)
    assert len(err) < 600, err  # one readable line, not a dump of both plans


def test_the_untampered_checkpoint_resumes(stopped_closed_loop, tmp_path):
    """The control for the cases above: the same copy, untouched, resumes and completes."""
    out = tmp_path / "run"
    shutil.copytree(stopped_closed_loop, out)
    assert main(["run", "--resume", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


# -- the library ---------------------------------------------------------------------------

def _plans():
    base = Plan({"lr": "cosine(peak=1e-3)", "weight_decay": "linear(peak=0.1)"}, horizon=100)
    rates = Rates(samples_per_step=8)
    return base, [
        (Plan({"lr": "cosine(peak=2e-3)", "weight_decay": "linear(peak=0.1)"}, horizon=100), ("channels", "peak=0.002")),
        (Plan({"lr": "cosine(peak=1e-3)"}, horizon=100), ("channels", "this plan has", "weight_decay")),
        (Plan({"lr": "cosine(peak=1e-3)", "weight_decay": "linear(peak=0.1)"}, horizon=200), ("horizon 200", "100")),
        (Plan({"lr": "cosine(peak=1e-3)", "weight_decay": "linear(peak=0.1)"}, horizon=100, unit="sample", rates=rates),
         ("'sample'", "steps")),
        (Plan({"lr": "plateau(cosine(peak=1e-3))", "weight_decay": "linear(peak=0.1)"}, horizon=100),
         ("channels", "plateau")),
    ]


@pytest.mark.parametrize("index", range(5))
def test_library_load_state_dict_of_another_plan_raises_one_line(index):
    plan, others = _plans()
    other, want = others[index]
    other.advance()
    before = plan.state_dict()
    with pytest.raises(PlanError) as e:
        plan.load_state_dict(other.state_dict())
    message = str(e.value)
    assert "\n" not in message and e.value.field == "state", message
    assert all(w in message for w in want), message
    assert plan.state_dict() == before  # refused: nothing changed


def test_library_names_the_channel_that_differs_among_long_specs():
    """With long specs the message still says which channel differs (the runner keeps 200 characters of it)."""
    long = "plateau(warmup(cosine(peak=1e-3, final=1e-5), '10%'), patience=3, factor=0.5, threshold=0.001)"
    mine = Plan({"lr": long, "weight_decay": "linear(peak=0.1)"}, horizon=100)
    theirs = Plan({"lr": long, "weight_decay": "linear(peak=0.2)"}, horizon=100)
    with pytest.raises(PlanError) as e:
        mine.load_state_dict(theirs.state_dict())
    assert "'weight_decay'" in str(e.value)[:200], str(e.value)


# -- regressions of the defects the plan fuzz entries found (docs/reliability.md) ----------------

def test_huge_ints_are_errors_or_infinite_metrics_not_overflow():
    from cadence import Plan
    from cadence.errors import CadenceError

    plan = Plan({"lr": "plateau(cosine(peak=0.1))", "batch": "noise_batch(start=2, max=8)"}, horizon=10, micro_batch=1)
    plan.observe({"val_loss": 10**400, "noise_g2": 10**400, "noise_trace": 1.0})  # an int too large: infinite
    assert json.loads(json.dumps(plan.state_dict(), allow_nan=False))
    for call in (lambda: Plan({"lr": 10**400}, horizon=10), lambda: Plan({"lr": 0.1}, horizon=10).advance(samples=10**400),
                 lambda: Plan({"lr": 0.1}, horizon=10).advance(samples=1, tokens=10**400)):
        with pytest.raises(CadenceError):
            call()


def test_counters_stop_at_2_to_the_53():
    from cadence import Plan
    from cadence.errors import LimitError

    plan = Plan({"lr": 0.1}, horizon=10)
    plan.advance(samples=2**53)
    with pytest.raises(LimitError):
        plan.advance(samples=1)
    assert plan.clock.samples == 2**53 and plan.clock.step == 1


@pytest.mark.parametrize("rates, unit", [({"samples_per_step": 0.5}, "step"), ({"samples_per_step": 3, "tokens_per_sample": 0.5}, "step"),
                                         ({"samples_per_step": 3, "tokens_per_sample": 0.5}, "sample")])
def test_fractional_rates_count_the_same_in_preview_and_stepping(rates, unit):
    from cadence import Plan, Rates

    make = lambda: Plan({"lr": "cosine(peak=0.1)"}, horizon=40, unit=unit, rates=Rates(**rates))  # noqa: E731
    preview, plan, rows = make().preview(), make(), []
    while not plan.done:
        rows.append((plan.clock.step, plan.clock.samples, plan.clock.tokens, plan.values()["lr"]))
        plan.advance()
    assert [tuple(r) for r in zip(preview["step"], preview["samples"], preview["tokens"], preview["lr"])] == rows


def test_a_token_clock_needs_whole_tokens_per_sample():
    from cadence import Plan, Rates
    from cadence.errors import PlanError

    with pytest.raises(PlanError, match="whole number of tokens per sample"):
        Plan({"lr": 0.1, "batch": 1}, horizon=4, unit="token", rates=Rates(tokens_per_sample=0.5))


def test_a_batch_schedule_below_one_micro_batch_holds_one():
    from cadence import Plan

    plan = Plan({"batch": "cosine(peak=64)"}, horizon=100, micro_batch=8)
    seen = []
    while not plan.done:
        seen.append(plan.values()["batch"])
        plan.advance()
    assert min(seen) == 8 and seen[0] == 64 and all(b % 8 == 0 for b in seen)


def test_scale_with_preview_equals_stepping_bit_for_bit():
    from cadence import Plan, Rates

    channels = {"wd": "clip(cosine(peak=0.1), floor=0.01)", "b1": "scale_with(constant(value=0.01), reference=1, channel='wd')"}
    make = lambda: Plan(channels, horizon="64Ksa", unit="sample", rates=Rates(samples_per_step=3))  # noqa: E731
    preview, plan = make().preview(), make()
    for k in range(len(preview["step"])):
        assert plan.values()["b1"] == preview["b1"][k]
        plan.advance()


def test_a_yaml_anchor_bomb_is_refused_quickly(tmp_path, capsys):
    lines = ["seed: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"size: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" if i == 1 else f"x{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]")
    text = "\n".join(lines).replace("size:", "clip:") + "\nhorizon: 10\nchannels: {lr: '0.1'}\nworkload: *l8\n"
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    assert main(["schedule", "--plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "100,000 values" in err


def test_a_horizon_past_2_to_the_53_is_refused_when_changed_too():
    """Found by the torch fuzz entry: set_total(10**400) reached numpy with a Python int of 401 digits."""
    import torch

    from cadence import Plan
    from cadence.errors import LimitError
    from cadence.torch import Scheduler

    sched = Scheduler(torch.optim.Adam(torch.nn.Linear(2, 2).parameters()), "cosine(peak=0.1)", total_steps=219)
    with pytest.raises(LimitError, match="set_total: total_steps"):
        sched.set_total(10**400)
    assert sched.total_steps == 219
    with pytest.raises(LimitError):
        Plan({"lr": "cosine(peak=0.1)"}, horizon=10).set_horizon(2**54)
