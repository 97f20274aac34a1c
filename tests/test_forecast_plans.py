"""Plans in the forecaster: `forecast rank` and `forecast optimize` with plan files (cadence.forecast.plans)."""

import numpy as np
import pytest

from cadence import schedules as S
from cadence.cli import common, main
from cadence.errors import ForecastError, PlanError
from cadence.forecast import FittedLaw
from cadence.forecast.plans import PLAN_SETTINGS, common_steps, optimize_request, plan_schedule
from cadence.time import Rates

LAW = FittedLaw("multipower", {"L0": 2.9, "A": 0.45, "alpha": 0.5, "B": 0.4, "C": 1.5, "beta": 0.6, "gamma": 0.4}, 3e-4)
COS = "cosine(peak=3e-4, warmup=40)"
STEP_PLAN = f"horizon: 400\nchannels:\n  lr: \"{COS}\"\n  weight_decay: 0.1\n"
# 12,800 samples of 32 per step: the same 400 steps; the warmup as a fraction, 10% = 40 steps
SAMPLE_PLAN = "unit: sample\nhorizon: 12800\n{batch}channels:\n  lr: \"cosine(peak=3e-4, warmup='10%')\"\n"


@pytest.fixture
def law(tmp_path):
    path = tmp_path / "law.json"
    LAW.save(path)
    return str(path)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def run_ok(capsys, *argv):
    code = main(["forecast", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def refused(capsys, *argv):
    """The one line a refused command prints (exit 2, no traceback)."""
    code = main(["forecast", *argv])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err, (code, out, err)
    assert err.startswith("cadence: error: ")
    return err


def ranked(table):
    """{name: predicted final loss} from rank's table."""
    rows = [line.split("|") for line in table.splitlines()[2:] if line.startswith("|")]
    return {r[2].strip(): float(r[3]) for r in rows}


def test_a_plan_file_ranks_as_its_lr_spec(law, tmp_path, capsys):
    plan = write(tmp_path, "cos.yaml", STEP_PLAN)
    table = run_ok(capsys, "rank", law, "--schedule", f"plan={plan}", "--schedule", f"spec={COS}",
                   "--schedule", "wsd=wsd(peak=3e-4, warmup=40)")
    finals = ranked(table)
    truth = float(LAW.predict(S.parse(COS).values(400), [399])[0])
    assert finals["plan"] == finals["spec"] == pytest.approx(truth, abs=5e-5)
    assert f"`{plan}: lr=cosine(peak=0.0003" in table  # the spec column says where a plan candidate came from
    # the library gives the same LRs as the spec, step for step
    p = plan_schedule(plan, LAW)
    assert p.steps == 400 and p.unit == "step" and np.array_equal(p.lrs, S.parse(COS).values(400))


def test_plans_and_specs_mix_on_one_run_length(law, tmp_path, capsys):
    steps = write(tmp_path, "steps.yaml", STEP_PLAN)
    samples = write(tmp_path, "samples.yaml", SAMPLE_PLAN.format(batch="batch_size: 32\n"))
    # no --total: the plan files say 400 steps, and the spec candidate is evaluated over them
    finals = ranked(run_ok(capsys, "rank", law, "--schedule", f"a={steps}", "--schedule", f"b={samples}",
                           "--schedule", "c=constant(value=3e-4)"))
    assert finals["a"] == finals["b"] < finals["c"]
    assert ranked(run_ok(capsys, "rank", law, "--total", "400", "--schedule", f"a={steps}",
                         "--schedule", f"c={COS}")) == {"a": finals["a"], "c": finals["a"]}
    short = write(tmp_path, "short.yaml", STEP_PLAN.replace("400", "300"))
    err = refused(capsys, "rank", law, "--schedule", f"a={steps}", "--schedule", f"s={short}")
    assert "different numbers of optimizer steps" in err and f"a ({steps}) 400" in err and f"s ({short}) 300" in err
    err = refused(capsys, "rank", law, "--total", "500", "--schedule", f"a={steps}", "--schedule", f"c={COS}")
    assert err.startswith("cadence: error: --total: ") and "'a'" in err and "400 optimizer steps, not the 500" in err
    err = refused(capsys, "rank", law, "--schedule", f"c={COS}")  # no plan file and no --total
    assert err.startswith("cadence: error: --total: the run length is needed")
    err = refused(capsys, "rank", law, "--schedule", f"a={steps}", "--schedule", f"a={COS}")
    assert "name 'a' is given twice" in err


def test_a_batch_that_changes_is_refused_a_constant_one_converts_the_clock(law, tmp_path, capsys):
    moving = write(tmp_path, "ramp.yaml", "unit: sample\nhorizon: 12800\nmicro_batch: 16\nchannels:\n"
                   f"  lr: \"{COS}\"\n  batch: \"ramp(32, 128, '30%')\"\n")
    err = refused(capsys, "rank", law, "--schedule", f"r={moving}")
    assert "channel 'batch' changes over the run" in err and "the multipower law" in err
    assert "predicts from the learning rate at a fixed batch" in err
    with pytest.raises(ForecastError, match="fixed batch"):
        plan_schedule(moving, LAW)
    # a constant batch channel is accepted: it says how many samples a step holds; scale_with reads it exactly
    scaled = write(tmp_path, "scaled.yaml", "unit: sample\nhorizon: 12800\nchannels:\n"
                   "  lr: \"scale_with(cosine(peak=3e-4, warmup='10%'), reference=8)\"\n  batch: 32\n")
    p = plan_schedule(scaled, LAW)
    assert p.steps == 400 and p.samples_per_step == 32
    assert np.allclose(p.lrs, 2 * S.parse(COS).values(400), rtol=1e-12, atol=0)  # sqrt(32 / 8) = 2
    run_ok(capsys, "rank", law, "--schedule", f"s={scaled}", "--schedule", f"c={COS}")
    # any other channel that changes is not modelled either
    decay = write(tmp_path, "wd.yaml", f"horizon: 400\nchannels:\n  lr: \"{COS}\"\n  weight_decay: \"cosine(peak=0.1)\"\n")
    err = refused(capsys, "rank", law, "--schedule", f"w={decay}")
    assert "channel 'weight_decay' changes over the run" in err and "give weight_decay a constant" in err


def test_controllers_that_follow_measured_signals_are_refused(law, tmp_path, capsys):
    plateau = write(tmp_path, "plateau.yaml", f"horizon: 400\nchannels:\n  lr: \"plateau({COS}, patience=2)\"\n")
    err = refused(capsys, "rank", law, "--schedule", f"p={plateau}")
    assert "channel 'lr' is a controller (plateau) that follows val_loss" in err and "forecast the schedule under" in err
    err = refused(capsys, "optimize", law, "--plan", plateau)
    assert err.startswith("cadence: error: --plan: ") and "controller (plateau)" in err
    noise = write(tmp_path, "noise.yaml", f"horizon: 400\nmicro_batch: 16\nchannels:\n  lr: \"{COS}\"\n"
                  "  batch: \"noise_batch(start=32, max=256)\"\n")
    err = refused(capsys, "rank", law, "--schedule", f"n={noise}")
    assert "channel 'batch' is a controller (noise_batch) that follows noise_g2, noise_trace" in err
    nested = write(tmp_path, "nested.yaml", "horizon: 400\nchannels:\n  batch: 32\n"
                   f"  lr: \"scale_with(plateau({COS}), reference=32)\"\n")
    assert "controller (plateau)" in refused(capsys, "rank", law, "--schedule", f"n={nested}")


def test_a_sample_or_token_clock_needs_the_batch(law, tmp_path, capsys):
    bare = write(tmp_path, "bare.yaml", SAMPLE_PLAN.format(batch=""))
    err = refused(capsys, "rank", law, "--schedule", f"b={bare}")
    assert err.startswith("cadence: error: --samples-per-step: ") and "does not say how many samples" in err
    with pytest.raises(ForecastError) as e:
        plan_schedule(bare, LAW)
    assert e.value.field == "samples_per_step" and "--" not in str(e.value)  # the library names no flag
    given = ranked(run_ok(capsys, "rank", law, "--schedule", f"b={bare}", "--samples-per-step", "32"))
    own = ranked(run_ok(capsys, "rank", law, "--schedule", f"b={write(tmp_path, 'own.yaml', SAMPLE_PLAN.format(batch='batch_size: 32' + chr(10)))}"))
    assert given == own
    err = refused(capsys, "rank", law, "--schedule", f"b={tmp_path / 'own.yaml'}", "--samples-per-step", "64")
    assert "says 32 samples per step (its batch_size), and 64 were given" in err
    tokens = write(tmp_path, "tok.yaml", "unit: token\nhorizon: 1.6M\nbatch_size: 32\nchannels:\n"
                   "  lr: \"cosine(peak=3e-4, warmup='10%')\"\n")
    err = refused(capsys, "rank", law, "--schedule", f"t={tokens}")
    assert err.startswith("cadence: error: --tokens-per-sample: ") and "counts tokens" in err
    assert ranked(run_ok(capsys, "rank", law, "--schedule", f"t={tokens}", "--tokens-per-sample", "125",
                         "--schedule", f"c={COS}")) == {"t": given["b"], "c": given["b"]}


def test_optimize_takes_length_peak_and_warmup_from_a_plan(law, tmp_path, capsys):
    plan = write(tmp_path, "cos.yaml", STEP_PLAN)
    assert optimize_request(plan_schedule(plan, LAW)) == (400, 3e-4, 40)
    text = run_ok(capsys, "optimize", law, "--plan", plan)
    assert text.startswith(f"from {plan}: 400 steps, peak 0.0003, warmup 40; its own lr predicts ")
    flags = run_ok(capsys, "optimize", law, "--total", "400", "--peak", "3e-4", "--warmup", "40")
    assert text.split("\n", 1)[1] == flags  # the same optimisation
    err = refused(capsys, "optimize", law, "--plan", plan, "--total", "400")
    assert "--plan gives the run's length, peak and warmup: drop --total" in err
    assert "needs --total and --peak, or --plan" in refused(capsys, "optimize", law, "--peak", "3e-4")
    rising = write(tmp_path, "rise.yaml", "horizon: 400\nchannels:\n  lr: \"piecewise(points=[[0, 1e-4], [40, 3e-4], "
                   "[399, 0]])\"\n")
    assert "not linearly from 0" in refused(capsys, "optimize", law, "--plan", rising)
    late = write(tmp_path, "late.yaml", "horizon: 400\nchannels:\n  lr: \"linear(peak=3e-4, warmup=399)\"\n")
    assert "peaks at step" in refused(capsys, "optimize", law, "--plan", late)


def test_plan_files_that_cannot_be_forecast(law, tmp_path, capsys):
    no_lr = write(tmp_path, "nolr.yaml", "horizon: 400\nchannels:\n  weight_decay: 0.1\n")
    assert "has no lr channel" in refused(capsys, "rank", law, "--schedule", f"x={no_lr}")
    open_ended = write(tmp_path, "open.yaml", "channels:\n  lr: 3e-4\n")
    assert "has no horizon" in refused(capsys, "rank", law, "--schedule", f"x={open_ended}")
    missing = str(tmp_path / "missing.yml")
    assert "does not exist" in refused(capsys, "rank", law, "--schedule", f"x={missing}")
    junk = write(tmp_path, "junk.json", "{\"channels\": {\"lr\": 1e-3}, \"horizon\": 10, \"lol\": 1}")
    assert "unknown key 'lol'" in refused(capsys, "rank", law, "--schedule", f"x={junk}")
    with pytest.raises(PlanError):
        plan_schedule(missing)


def test_library_pieces(tmp_path):
    assert PLAN_SETTINGS == common.PLAN_FILE_SETTINGS  # the same run settings as every plan-file reader
    with pytest.raises(ForecastError, match="give the number of optimizer steps"):
        common_steps({})
    assert common_steps({}, 12) == 12
    plan = write(tmp_path, "cos.yaml", STEP_PLAN)
    with pytest.raises(ForecastError, match="rates must be a cadence.Rates"):
        plan_schedule(plan, rates="not rates")
    assert plan_schedule(plan, rates=Rates(samples_per_step=8)).samples_per_step == 8
