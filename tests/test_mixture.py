"""The mixture channel: a weight per domain from numbers, schedules or a controller, in the plan and the runner."""

import json

import numpy as np
import pytest

from cadence.bench.report import load_metrics
from cadence.bench.runner import RunConfig, train
from cadence.cli import main
from cadence.controllers import Mix
from cadence.errors import CadenceError, PlanError
from cadence.plan import Plan, read_plan_file
from cadence.torch import optimizer_channels

from test_text_workload import make_corpus

DOMAINS = ("code", "numbers", "prose")


def plan(mixture, horizon=10, **kw):
    return Plan({"lr": "cosine(peak=1e-3)", "mixture": mixture}, horizon=horizon, domains=DOMAINS, **kw)


def test_weights_are_normalised_at_every_step_and_follow_their_schedules():
    p = plan({"code": 2, "numbers": "linear(peak=1, final=3)", "prose": 0})
    first = p.values()
    assert first["mixture/code"] == pytest.approx(2 / 3) and first["mixture/numbers"] == pytest.approx(1 / 3)
    assert first["mixture/prose"] == 0.0 and "mixture" not in first
    p.advance()
    p.advance()
    numbers = 1 + 2 * 2 / 10  # linear from 1 to 3 over the 10-step horizon, at step 2
    assert p.mixture() == pytest.approx({"code": 2 / (2 + numbers), "numbers": numbers / (2 + numbers), "prose": 0.0})
    preview = p.preview()
    assert np.allclose(preview["mixture/code"] + preview["mixture/numbers"] + preview["mixture/prose"], 1.0)
    assert preview["mixture/numbers"][2] == pytest.approx(p.mixture()["numbers"])
    assert optimizer_channels(p) == ["lr"]  # the mixture is not an optimizer field


def test_the_spec_form_and_the_object_form_are_one_channel():
    a, b = plan("mix(code=1, numbers=1, prose=2)"), plan({"code": 1, "numbers": 1, "prose": 2})
    assert a.channels == b.channels == {"lr": a.channels["lr"], "mixture": {"code": 1.0, "numbers": 1.0, "prose": 2.0}}
    assert a.values() == b.values()
    state = json.loads(json.dumps(a.state_dict()))  # the channels, as a checkpoint holds them
    b.load_state_dict(state)
    other = plan({"code": 1, "numbers": 2, "prose": 2})
    with pytest.raises(PlanError, match="its 'mixture' is"):
        other.load_state_dict(state)


@pytest.mark.parametrize("mixture, message", [
    ({"code": -1, "numbers": 1, "prose": 1}, "finite number >= 0"),
    ({"code": float("nan"), "numbers": 1, "prose": 1}, "finite number >= 0"),
    ({"code": 0, "numbers": 0, "prose": 0}, "all zero at step 0"),
    ({"code": 1, "numbers": 1, "prose": 1, "web": 1}, "names 'web', which the run does not have"),
    ({"code": 1, "numbers": 1}, "has no weight for 'prose'"),
    ({"code": 1, "numbers": True, "prose": 1}, "a number >= 0 or a schedule"),
    ({"code": 1, "numbers": "plateau(cosine(peak=1))", "prose": 1}, "not a controller"),
    ("cosine(peak=1)", "takes a weight per domain"),
    (0.5, "takes a weight per domain"),
])
def test_bad_mixtures_are_one_line_errors(mixture, message):
    with pytest.raises(CadenceError, match=message) as e:
        plan(mixture)
    assert "\n" not in str(e.value)


def test_a_mixture_needs_domains_and_only_the_mixture_takes_one():
    with pytest.raises(PlanError, match="needs the run's domains"):
        Plan({"lr": 0.1, "mixture": {"a": 1, "b": 1}}, horizon=5)
    with pytest.raises(PlanError, match="takes one schedule, not an object"):
        Plan({"lr": {"a": 1}}, horizon=5, domains=DOMAINS)
    with pytest.raises(PlanError, match="channel 'lr': mix\\(\\) drives the 'mixture' channel"):
        Plan({"lr": "mix(a=1, b=1)"}, horizon=5, domains=("a", "b"))
    with pytest.raises(PlanError, match="channel 'mixture': sec\\(\\) drives the 'curriculum' channel"):
        Plan({"lr": 0.1, "mixture": "sec()"}, horizon=5, domains=DOMAINS)
    with pytest.raises(PlanError, match="two or more domains"):
        Plan({"lr": 0.1, "mixture": {"a": 1}}, horizon=5, domains=("a",))
    ahead = Plan({"lr": 0.1, "mixture": {"code": "linear(peak=1, final=0)", "numbers": 0, "prose": 0}}, horizon=4,
                 domains=DOMAINS)  # code alone, falling towards 0 but never reaching it within the horizon
    assert ahead.preview()["mixture/code"].tolist() == [1.0] * 4
    with pytest.raises(PlanError, match="all zero at step 0"):  # a warmup from 0: nothing to draw at the start
        Plan({"lr": 0.1, "mixture": {"code": "constant(1, warmup=2)", "numbers": 0, "prose": 0}}, horizon=4,
             domains=DOMAINS)
    assert Mix(a=1, b=2).spec() == "mix(a=1.0, b=2.0)" and Mix(a=1, b="linear(peak=1)").spec().startswith("mix(a=1.0, b=linear(")


def test_plan_files_write_the_mixture_as_an_object(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("channels:\n  lr: cosine(peak=1e-3)\n  mixture: {code: 0.5, numbers: 'linear(peak=0.2, final=0.4)', "
                    "prose: 0.3}\n")
    data = read_plan_file(path)
    p = Plan(data["channels"], horizon=10, domains=DOMAINS)
    assert p.values()["mixture/code"] == pytest.approx(0.5 / 1.0)
    path.write_text("channels:\n  lr: cosine(peak=1e-3)\n  mixture: {code: [1], numbers: 1, prose: 1}\n")
    with pytest.raises(PlanError, match="gives domain 'code' the weight"):
        read_plan_file(path)


def config(data, **kw):
    base = dict(workload="text", data=str(data), size="xs", horizon=12, batch_size=8, eval_every=6,
                checkpoint_every=4, channels={"lr": "cosine(peak=2e-3, warmup=2)",
                                              "mixture": {"code": 3, "numbers": "linear(peak=0, final=2)", "prose": 0}})
    base.update(kw)
    return RunConfig(**base)


def test_the_runner_draws_by_the_mixture_and_resumes_exactly(tmp_path):
    data = make_corpus(tmp_path / "corpus")
    train(config(data), tmp_path / "a", threads=1)
    train(config(data), tmp_path / "b", threads=1, stop_after=7)
    train(config(data), tmp_path / "b", threads=1, resume=True)
    assert (tmp_path / "a" / "metrics.csv").read_bytes() == (tmp_path / "b" / "metrics.csv").read_bytes()
    m = load_metrics(tmp_path / "a" / "metrics.csv")
    header = (tmp_path / "a" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "mixture" not in header and {f"train_loss/{d}" for d in DOMAINS} <= set(header)
    assert m["samples/prose"].tolist() == [0] * 12 and np.isnan(m["train_loss/prose"]).all()  # weight 0: never drawn
    assert m["mixture/numbers"][0] == 0 and m["samples/numbers"][0] == 0 and m["samples/numbers"][-1] > 0
    assert m["mixture/code"][0] == 1.0 and m["mixture/code"][-1] == pytest.approx(3 / (3 + 2 * 11 / 12))
    assert np.isfinite(m["train_loss/code"]).all()
    saved = json.loads((tmp_path / "a" / "run.json").read_text())
    assert saved["config"]["channels"]["mixture"] == {"code": 3.0, "numbers": "linear(peak=0, final=2, warmup=0)",
                                                      "prose": 0.0}


def test_a_bad_mixture_on_the_command_line_is_one_line_before_anything_is_written(tmp_path, capsys):
    data = make_corpus(tmp_path / "corpus")
    for spec, message in (("mix(code=1, numbers=1)", "no weight for 'prose'"),
                          ("mix(code=-1, numbers=1, prose=1)", "finite number >= 0"),
                          ("mix(code=0, numbers=0, prose=0)", "all zero"),
                          ("cosine(peak=1)", "takes a weight per domain")):
        code = main(["run", "text", "--data", str(data), "--set", f"mixture={spec}", "--steps", "2", "--size", "xs",
                     "--out", str(tmp_path / "out"), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
        assert not (tmp_path / "out").exists()
    code = main(["run", "tiny-lm", "--set", "mixture=mix(a=1, b=1)", "--steps", "2", "--size", "xs",
                 "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "needs the run's domains" in err and not (tmp_path / "out").exists()


def test_the_schedule_command_previews_a_mixture_per_domain(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text("horizon: 10\nchannels:\n  lr: cosine(peak=1e-3)\n  mixture: {code: 3, prose: 1}\n")
    assert main(["schedule", "--plan", str(path), "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "step,samples,tokens,lr,mixture/code,mixture/prose" and lines[1].endswith(",0.75,0.25")
    path.write_text("horizon: 10\nchannels:\n  lr: cosine(peak=1e-3)\n  mixture: odm()\n")
    assert main(["schedule", "--plan", str(path)]) == 2
    assert "name them with --domains" in capsys.readouterr().err
    assert main(["schedule", "--plan", str(path), "--domains", "a,b,c"]) == 0
    assert "mixture/c" in capsys.readouterr().out


def test_mixers_drive_the_runner_and_doremi_reads_its_reference_once(tmp_path):
    data = make_corpus(tmp_path / "corpus")
    base = dict(workload="text", data=str(data), size="xs", horizon=16, batch_size=8, eval_every=8, checkpoint_every=5)
    train(RunConfig(channels={"lr": "cosine(peak=3e-3, warmup=2)"}, **base), tmp_path / "uniform", threads=1)
    ref = load_metrics(tmp_path / "uniform" / "metrics.csv")
    doremi = RunConfig(channels={"lr": "cosine(peak=3e-3, warmup=2)",
                                 "mixture": f"doremi(reference='{tmp_path / 'uniform'}')"}, **base)
    manifest = train(doremi, tmp_path / "doremi", threads=1)
    spec = manifest["config"]["channels"]["mixture"]
    losses = [float(np.mean(ref[f"train_loss/{d}"][np.isfinite(ref[f"train_loss/{d}"])][-1:])) for d in DOMAINS]
    assert f"reference_loss=[{', '.join(repr(x) for x in losses)}]" in spec  # the numbers, in run.json
    assert sum(manifest["averaged_mixture"].values()) == pytest.approx(1.0)
    m = load_metrics(tmp_path / "doremi" / "metrics.csv")
    assert m["mixture/code"][-1] != m["mixture/code"][0]  # it moved
    train(doremi, tmp_path / "doremi-2", threads=1, stop_after=7)
    (tmp_path / "uniform" / "metrics.csv").unlink()
    with pytest.raises(CadenceError, match="doremi: the reference run .*uniform: cannot read"):  # a new run: refused
        RunConfig(**{**doremi.__dict__}).resolved()
    assert main(["run", "--resume", "--out", str(tmp_path / "doremi-2"), "--no-progress"]) == 0  # a resume: run.json's
    assert (tmp_path / "doremi" / "metrics.csv").read_bytes() == (tmp_path / "doremi-2" / "metrics.csv").read_bytes()
    for spec in ("odm()", "aioli(rounds=2, sweeps=1, probe_every=2)"):
        train(RunConfig(channels={"lr": "cosine(peak=3e-3, warmup=2)", "mixture": spec}, **base), tmp_path / "m",
              threads=1, overwrite=True)
        m = load_metrics(tmp_path / "m" / "metrics.csv")
        assert np.allclose(sum(m[f"mixture/{d}"] for d in DOMAINS), 1.0)
        assert ("probe_loss/code" in m) is spec.startswith("aioli")


def test_a_reference_that_is_not_a_finished_run_is_refused(tmp_path, capsys):
    data = make_corpus(tmp_path / "corpus")
    code = main(["run", "text", "--data", str(data), "--set", f"mixture=doremi(reference='{tmp_path / 'none'}')",
                 "--steps", "2", "--size", "xs", "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "is not a run folder" in err and len(err.strip().splitlines()) == 1


def test_a_scheduler_on_a_plan_with_a_mixture_saves_and_resumes(tmp_path):
    import torch

    from cadence.torch import Scheduler

    def make():
        model = torch.nn.Linear(2, 1)
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        p = plan({"code": 1, "numbers": "linear(peak=1, final=3)", "prose": 0.5})
        return opt, p, Scheduler(opt, p)

    opt, p, sched = make()
    for _ in range(4):
        opt.step()
        sched.step()
    state = json.loads(json.dumps(sched.state_dict()))
    opt2, p2, sched2 = make()
    sched2.load_state_dict(state)
    assert p2.mixture() == p.mixture() and p2.clock.step == 4
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_a_forecast_of_a_plan_that_sets_the_data_is_refused(tmp_path):
    from cadence.errors import ForecastError
    from cadence.forecast.plans import plan_schedule

    path = tmp_path / "p.yaml"
    path.write_text("horizon: 100\nchannels:\n  lr: cosine(peak=1e-3)\n  mixture: {code: 1, prose: 1}\n")
    with pytest.raises(ForecastError, match="channel 'mixture' sets the data"):
        plan_schedule(path)
    path.write_text("horizon: 100\ninit: runs/a\nchannels:\n  lr: cosine(peak=1e-3)\n")
    with pytest.raises(ForecastError, match="starts from a finished run"):
        plan_schedule(path)


def test_regressions_found_by_the_fuzz_run(tmp_path, capsys):
    from cadence.errors import DurationError, ScheduleError
    from cadence.time import Rates

    # preview() and values() add a mixture's weights in the same order: the same bits
    p = Plan({"mixture": {"a": 0.1, "b": 0.2, "c": 0.3}}, horizon=3, domains=["a", "b", "c"])
    assert p.preview()["mixture/a"][0] == p.values()["mixture/a"]
    # weights that decay to 0 at the horizon: a finished plan's state still loads (uniform there: nothing is drawn)
    def make():
        return Plan({"mixture": {"a": "cosine(peak=1.0)", "b": "cosine(peak=1.0)"}}, horizon=2, domains=["a", "b"])
    done = make()
    done.advance()
    done.advance()
    again = make()
    again.load_state_dict(done.state_dict())
    assert again.values() == {"mixture/a": 0.5, "mixture/b": 0.5}
    # scale_with on a huge signal: a cadence error, not an OverflowError
    p = Plan({"momentum": 0.1, "weight_decay": "plateau(scale_with(constant(value=0.1), reference=16, "
                                               "channel='momentum', power=4), patience=0)"}, horizon=10)
    with pytest.raises(ScheduleError, match="too large"):
        p.observe({"momentum": 1e308, "val_loss": 1.0})
    # a batch of 0 with steps per epoch: one line, not a ZeroDivisionError
    with pytest.raises(DurationError):
        Plan({"batch": 0}, horizon=10, rates=Rates(samples_per_step=1, steps_per_epoch=1))
    # a bad --domains is the flag's fault, not the plan file's
    path = tmp_path / "p.yaml"
    path.write_text("horizon: 10\nchannels:\n  lr: cosine(peak=1e-3)\n  mixture: odm()\n")
    assert main(["schedule", "--plan", str(path), "--domains", "a"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cadence: error: --domains expects") and "p.yaml" not in err


def test_regressions_found_by_review(tmp_path, capsys):
    from cadence.bench import continual, difficulty
    from cadence.controllers import DoReMi
    from cadence.errors import ScheduleError

    # --dense-eval with digits int() cannot read: one line, exit 2
    code = main(["run", "logreg", "--lr", "0.1", "--steps", "2", "--out", str(tmp_path / "x"), "--dense-eval", "²:5",
                 "--no-progress"])
    assert code == 2 and "--dense-eval expects EVERY:UNTIL" in capsys.readouterr().err
    # a plateau over a stateless schedule: its inner state stays None (any record in it is refused)
    p = Plan({"lr": "plateau(cosine(peak=0.1))"}, horizon=1000)
    state = p.state_dict()
    state["states"]["lr"]["inner"] = {"x": 1}
    with pytest.raises(PlanError, match="do not fit"):
        Plan({"lr": "plateau(cosine(peak=0.1))"}, horizon=1000).load_state_dict(state)
    # mixer weights beyond 1 in a tampered state, and a prior too large to add up: cadence errors
    p = Plan({"lr": 0.1, "mixture": "doremi(reference_loss=[1, 2, 3])"}, horizon=2000, domains=DOMAINS)
    state = p.state_dict()
    state["states"]["mixture"]["weights"] = [1e308] * 3
    with pytest.raises(PlanError, match="from 0 to 1"):
        Plan({"lr": 0.1, "mixture": "doremi(reference_loss=[1, 2, 3])"}, horizon=2000, domains=DOMAINS
             ).load_state_dict(state)
    with pytest.raises(ScheduleError, match="at most 1e12"):
        DoReMi(reference_loss=[1, 2], prior=[1e308, 1e308])
    # an init record whose run path holds a NUL
    with pytest.raises(CadenceError, match="init record"):
        continual.check_record({"run": "/tmp/a\x00b", "workload": "text", "size": "xs", "step": 1,
                                "checkpoint": "0" * 16, "optimizer": False})
    # a difficulty CSV with a BOM reads; a path given twice, or a field past csv's limit, is one line
    data = make_corpus(tmp_path / "corpus")
    from cadence.bench.text import Text

    w = Text(data_dir=str(data))
    rows = [f"{rel},{k}" for k, rel in enumerate(r for files in w.pieces().values() for r, _ in files)]
    (tmp_path / "bom.csv").write_text("\ufeffpath,score\n" + "\n".join(rows) + "\n", encoding="utf-8")
    assert len(difficulty.scores(w, difficulty.parse(f"column={tmp_path / 'bom.csv'}:score"))) == len(rows)
    (tmp_path / "twice.csv").write_text("path,score\n" + "\n".join(rows + rows[:1]) + "\n")
    with pytest.raises(CadenceError, match="is given twice"):
        difficulty.scores(w, difficulty.parse(f"column={tmp_path / 'twice.csv'}:score"))
    (tmp_path / "long.csv").write_text('path,score\n"' + "x" * 200_000 + '",1\n')
    with pytest.raises(CadenceError, match="not a CSV row"):
        difficulty.scores(w, difficulty.parse(f"column={tmp_path / 'long.csv'}:score"))


def test_the_callbacks_refuse_a_mixer_that_probes():
    from cadence.integrations.hf import PlanCallback as HFCallback
    from cadence.integrations.lightning import PlanCallback as LightningCallback

    for callback in (HFCallback, LightningCallback):
        with pytest.raises(PlanError, match="reads 'probe_loss/code', a held-out probe"):
            callback(Plan({"lr": 1e-3, "mixture": "aioli(rounds=2, sweeps=1, probe_every=2)"}, horizon=100,
                          domains=DOMAINS))
        callback(Plan({"lr": 1e-3, "mixture": "odm()"}, horizon=100, domains=DOMAINS))  # per-domain losses: accepted
