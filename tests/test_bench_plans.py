"""cadence bench as a full client of the runner: plan-file candidates, sample and token clocks, micro-batches."""

import csv
import json

import numpy as np
import pytest

from cadence.bench.compare import BenchConfig, plan_candidate
from cadence.bench.report import load_metrics, summarise
from cadence.cli import main
from cadence.errors import CadenceError, PlanError

# logreg: 455 training samples, one token per sample; a step of 32 samples takes milliseconds.
RAMP = """\
unit: sample
horizon: 640
micro_batch: 8
eval_every: 2
channels:
  lr: "constant(value=0.05)"
  batch: "ramp(start=16, end=64, duration='25%', shape='doubling')"
"""
WITH_DECAY = """\
batch_size: 16
channels:
  lr: "cosine(peak=0.05, warmup=3)"
  weight_decay: 0.01
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def bench(capsys, *argv):
    code = main(["bench", "logreg", "--seeds", "1", "--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def config_of(run_dir):
    return json.loads((run_dir / "run.json").read_text())["config"]


def test_a_plan_file_candidate_next_to_a_spec_candidate(tmp_path, capsys):
    plan = write(tmp_path, "decay.yaml", WITH_DECAY)
    out = tmp_path / "b"
    argv = ["--candidate", f"decay={plan}", "--candidate", "cos=cosine(peak=0.05)", "--steps", "12", "--eval-every", "4",
            "--out", str(out)]
    code, printed, err = bench(capsys, *argv)
    assert code == 0, err
    assert "| decay" in printed and "| cos" in printed and "steps to target" in printed
    record = json.loads((out / "bench.json").read_text())
    assert record["format"] == "cadence.bench/3"
    assert record["config"]["candidates"]["decay"] == {"file": plan, "batch_size": 16, "channels": {
        "lr": "cosine(peak=0.05, warmup=3)", "weight_decay": 0.01}}
    decay, cos = config_of(out / "runs" / "decay" / "seed-0"), config_of(out / "runs" / "cos" / "seed-0")
    assert decay["batch_size"] == 16 and decay["channels"]["weight_decay"].startswith("constant(value=0.01")
    assert cos["batch_size"] == 32 and "weight_decay" not in cos["channels"]  # the file defines only its candidate
    assert decay["horizon"] == cos["horizon"] == 12 and decay["eval_every"] == 4
    assert f"- `decay`: plan file `{plan}`: lr `cosine(peak=0.05, warmup=3)`" in (out / "report.md").read_text()
    # the same command continues the comparison; an edited plan file is another comparison
    assert bench(capsys, *argv)[0] == 0
    with open(plan, "a") as f:
        f.write("checkpoint_every: 5\n")
    code, _, err = bench(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and "holds a comparison with other settings" in err
    assert main(["report", str(out)]) == 0


def test_a_sample_clock_comparison_with_a_batch_ramp_compares_at_equal_samples(tmp_path, capsys):
    plan = write(tmp_path, "ramp.yaml", RAMP)
    out = tmp_path / "b"
    # no clock on the command line: the spec candidate runs on the plan file's (640 samples)
    code, printed, err = bench(capsys, "--candidate", "const=constant(value=0.05)", "--candidate", f"ramp={plan}",
                               "--eval-every", "2", "--out", str(out))
    assert code == 0, err
    const, ramp = (load_metrics(out / "runs" / name / "seed-0" / "metrics.csv") for name in ("const", "ramp"))
    for m in (const, ramp):  # each run ends at the step that reaches the horizon
        assert m["samples"][-1] >= 640 > m["samples"][-2]
    assert set(const["batch"] if "batch" in const else [32]) == {32}
    assert [int(b) for b in np.unique(ramp["batch"])] == [16, 32, 64]
    assert len(ramp["step"]) < len(const["step"])  # a growing batch: fewer, longer steps for the same samples
    s = summarise(out)
    assert (s["unit"], s["horizon"], s["steps"]) == ("sample", 640, None)
    rows = {r["candidate"]: r for r in s["rows"]}
    for name, m in (("const", const), ("ramp", ramp)):  # to target: the samples seen, not the steps taken
        hit = np.flatnonzero(m["val_loss"] <= s["target"])[0]
        assert rows[name]["to_target"] == m["samples"][hit] and rows[name]["steps_to_target"] == hit + 1
        assert rows[name]["steps"] == len(m["step"])
    assert rows["ramp"]["speedup"] == pytest.approx(rows["const"]["to_target"] / rows["ramp"]["to_target"])
    report = (out / "report.md").read_text()
    assert "horizon 640 samples" in report and "compared at equal samples" in report
    assert "| candidate | final val loss | final train loss | samples to target | reached | speed-up vs const | steps |" in report
    with open(out / "summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["candidate"] for r in table] == ["const", "ramp"] and float(table[1]["samples_to_target"]) == rows["ramp"]["to_target"]
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG" and (out / "val_loss.png").stat().st_size > 0


def test_a_token_clock_and_micro_batches_from_the_command_line(tmp_path, capsys):
    plan = write(tmp_path, "ramp.yaml", 'channels:\n  lr: "constant(value=0.05)"\n'
                                        "  batch: \"ramp(start=16, end=64, duration='25%', shape='doubling')\"\n")
    out = tmp_path / "b"
    code, printed, err = bench(capsys, "--unit", "token", "--horizon", "480", "--micro-batch", "8", "--eval-every", "3",
                               "--candidate", "const=constant(value=0.05)", "--candidate", f"ramp={plan}",
                               "--out", str(out))
    assert code == 0, err
    assert "tokens to target" in printed
    for name in ("const", "ramp"):  # the comparison's clock and micro-batch reach the plan file's candidate too
        cfg = config_of(out / "runs" / name / "seed-0")
        assert (cfg["unit"], cfg["horizon"], cfg["micro_batch"]) == ("token", 480, 8)
        m = load_metrics(out / "runs" / name / "seed-0" / "metrics.csv")
        assert m["tokens"][-1] >= 480 > m["tokens"][-2]
    config = json.loads((out / "bench.json").read_text())["config"]
    assert (config["unit"], config["horizon"], config["micro_batch"], config["steps"]) == ("token", 480, 8, None)
    assert summarise(out)["unit"] == "token"


# -- refusals: one line, exit status 2, before anything is written ---------------------------------------------

OTHER_PLANS = {
    "tokens.yaml": 'unit: token\nhorizon: 640\nchannels:\n  lr: "constant(value=0.05)"\n',
    "short.yaml": 'unit: sample\nhorizon: 320\nchannels:\n  lr: "constant(value=0.05)"\n',
    "seeded.yaml": 'seed: 3\nchannels:\n  lr: "constant(value=0.05)"\n',
    "digits.yaml": 'workload: digits\nchannels:\n  lr: "constant(value=0.05)"\n',
    "decay.yaml": 'channels:\n  lr: "constant(value=0.05)"\n  weight_decay: 0.01\n',
}


@pytest.mark.parametrize("argv, fragment", [
    (["--candidate", "a=ramp.yaml", "--candidate", "b=tokens.yaml"],
     "candidates must count the same unit to the same horizon, and these differ: a (ramp.yaml): 640 samples; "
     "b (tokens.yaml): 640 tokens"),
    (["--candidate", "a=ramp.yaml", "--candidate", "b=short.yaml"], "a (ramp.yaml): 640 samples; b (short.yaml): 320 samples"),
    (["--candidate", "a=ramp.yaml", "--horizon", "320"], "the comparison's own: 320 samples; a (ramp.yaml): 640 samples"),
    (["--candidate", "a=ramp.yaml", "--candidate", "c=constant(value=0.1)", "--unit", "sample", "--horizon", "320"],
     "a (ramp.yaml): 640 samples; c: 320 samples"),
    (["--candidate", "a=ramp.yaml", "--unit", "token"], "--unit token and candidate a's plan file ramp.yaml (which counts "
                                                        "samples) contradict each other"),
    (["--candidate", "a=ramp.yaml", "--steps", "20"], "--steps (a step clock) and candidate a's plan file ramp.yaml"),
    (["--candidate", "a=missing.yaml"], "--candidate a: the plan file 'missing.yaml' does not exist"),
    (["--candidate", "a=ramp.yaml", "--micro-batch", "4"], "--micro-batch 4 and candidate a's plan file ramp.yaml's "
                                                           "micro_batch 8 contradict each other; keep one"),
    (["--candidate", "a=ramp.yaml", "--eval-every", "5"], "--eval-every 5 and candidate a's plan file"),
    (["--candidate", "a=decay.yaml", "--set", "weight_decay=0.02"],
     "--set: candidate 'a' (decay.yaml): its plan file drives 'weight_decay' with '0.01' and the comparison with '0.02'"),
    (["--candidate", "a=seeded.yaml"], "--candidate: candidate 'a' (seeded.yaml): the plan file sets seed 3"),
    (["--candidate", "a=digits.yaml"], "the plan file is for workload 'digits', not 'logreg'"),
    (["--candidate", "a=constant(value=0.1)", "--unit", "token"], "--horizon: a comparison on a token clock needs a horizon"),
    (["--candidate", "a=constant(value=0.1)", "--steps", "5", "--horizon", "6"], "--steps and --horizon both set"),
    (["--candidate", "a=constant(value=0.1)", "--unit", "token", "--horizon", "100", "--micro-batch", "5"],
     "--micro-batch: batch_size 32 is not a whole number of micro-batches of 5"),
])
def test_refusals_are_one_line_and_exit_2(argv, fragment, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ramp.yaml").write_text(RAMP)
    for name, text in OTHER_PLANS.items():
        (tmp_path / name).write_text(text)
    code, out, err = bench(capsys, *argv, "--out", "b")
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.startswith("cadence: error: ") and err.count("\n") == 1 and fragment in err, err
    assert not (tmp_path / "b").exists()


def test_library_errors_name_no_flags_and_records_round_trip(tmp_path):
    ramp = plan_candidate(write(tmp_path, "ramp.yaml", RAMP))
    tokens = plan_candidate(write(tmp_path, "tokens.yaml", OTHER_PLANS["tokens.yaml"]))
    with pytest.raises(PlanError, match="these differ") as e:
        BenchConfig(workload="logreg", candidates={"a": ramp, "b": tokens}, seeds=1).runs()
    with pytest.raises(PlanError, match="does not exist") as missing:
        plan_candidate(tmp_path / "nope.yaml")
    with pytest.raises(CadenceError, match="give it in one place") as clash:
        BenchConfig(workload="logreg", candidates={"a": ramp}, micro_batch=4, seeds=1).runs()
    with pytest.raises(CadenceError, match="steps and horizon both") as both:
        BenchConfig(workload="logreg", candidates={"a": "constant(value=0.1)"}, steps=5, horizon=6).check()
    for error in (e, missing, clash, both):
        assert "--" not in str(error.value) and "\n" not in str(error.value)
    config = BenchConfig(workload="logreg", candidates={"ramp": ramp, "c": "constant(value=0.05)"}, seeds=1)
    assert config.axis() == ("sample", 640)
    record = config.record()
    assert record["format"] == "cadence.bench/3"
    assert BenchConfig.from_record(json.loads(json.dumps(record)), "bench.json") == config
    # a spec-only comparison on a step clock is still written in the format the previous release reads
    assert BenchConfig(workload="logreg", candidates={"c": "constant(value=0.05)"}, steps=5).record()["format"] == \
        "cadence.bench/2"


@pytest.mark.parametrize("tamper, fragment", [
    (lambda r: {**r, "format": "cadence.bench/2"}, "config keys do not match a cadence comparison (unknown unit"),
    (lambda r: {**r, "config": {**r["config"], "candidates": {"ramp": {"channels": {"lr": "constant()"}}}}},
     "records its plan file's path under 'file'"),
    (lambda r: {**r, "config": {**r["config"], "candidates": {"ramp": {**r["config"]["candidates"]["ramp"], "rm": 1}}}},
     "unknown key 'rm'"),
    (lambda r: {**r, "config": {**r["config"], "unit": "furlong"}}, "unit must be 'step', 'sample' or 'token'"),
    (lambda r: {**r, "config": {**r["config"], "steps": 5, "horizon": 6}}, "steps and horizon both set"),
])
def test_report_of_a_tampered_plan_comparison_is_one_line(tamper, fragment, tmp_path, capsys):
    config = BenchConfig(workload="logreg", candidates={"ramp": plan_candidate(write(tmp_path, "ramp.yaml", RAMP))}, seeds=1)
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "bench.json").write_text(json.dumps(tamper(config.record())))
    code = main(["report", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and fragment in err, err
