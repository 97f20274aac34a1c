import json
import shutil

import pytest
import torch

from cadence.bench.report import load_metrics
from cadence.bench.runner import RunConfig, TrainingDiverged, train
from cadence.cli import main
from cadence.errors import CadenceError


def digits_config(**kw):
    base = dict(workload="digits", channels={"lr": "cosine(peak=3e-3, warmup=5)"}, horizon=40, eval_every=10, checkpoint_every=10)
    base.update(kw)
    return RunConfig(**base)


def test_metrics_schema_and_manifest(tmp_path):
    cfg = digits_config(channels={"lr": "cosine(peak=3e-3, warmup=5)", "weight_decay": "linear(peak=1e-3, final=0.0)"})
    manifest = train(cfg, tmp_path / "run")
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == ["step", "samples", "tokens", "lr", "weight_decay", "train_loss", "grad_norm", "val_loss", "val_accuracy"]
    m = load_metrics(tmp_path / "run" / "metrics.csv")
    assert m["step"].tolist() == list(range(40))
    assert m["samples"][-1] == 40 * 64
    assert (~torch.isnan(torch.tensor(m["val_loss"]))).sum() == 4  # every 10 steps
    assert m["lr"][0] == 0.0 and m["lr"][5] == pytest.approx(3e-3)
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["status"] == "complete" and saved["config"]["channels"]["lr"].startswith("cosine(")
    assert {"torch", "numpy", "python", "cadence"} <= set(saved["versions"])
    assert manifest["parameters"] == saved["parameters"] > 1000
    assert len((tmp_path / "run" / "timing.csv").read_text().splitlines()) == 41
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 40


def test_stopped_and_resumed_in_process_is_identical(tmp_path):
    train(digits_config(), tmp_path / "a")
    train(digits_config(), tmp_path / "b", stop_after=25)  # last checkpoint at 20; rows 20-24 get rewritten
    train(digits_config(), tmp_path / "b", resume=True)
    assert (tmp_path / "a" / "metrics.csv").read_bytes() == (tmp_path / "b" / "metrics.csv").read_bytes()


def test_divergence_stops_and_keeps_the_last_checkpoint(tmp_path, capsys):
    out = tmp_path / "nan"
    code = main(["run", "digits", "--lr", "constant(value=1e6)", "--optimizer", "sgd", "--steps", "100",
                 "--checkpoint-every", "1", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1 and "became nan" in err and "the last checkpoint (step" in err
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "diverged"
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == manifest["step"] and all(torch.isfinite(v).all() for v in state["model"].values())


@pytest.mark.parametrize("argv, fragment", [
    (["run", "mnist", "--out", "x"], "unknown workload 'mnist'"),
    (["run", "digits", "--lr", "cosine(peak=", "--out", "x"], "cannot parse"),
    (["run", "digits", "--lr", "cosine(peak=1, warmup=900)", "--steps", "100", "--out", "x"], "leaves no steps"),
    (["run", "digits", "--lr", "wsd(peak=1, decay='3ep')", "--steps", "10", "--out", "x"], "longer than the run"),
    (["run", "digits", "--set", "weight_decay", "--out", "x"], "CHANNEL=SPEC"),
    (["run", "digits", "--size", "huge", "--out", "x"], "--size: digits: unknown size 'huge'; allowed: small, medium"),
    (["run", "--out", "x"], "name a WORKLOAD"),
    (["run", "digits", "--device", "tpu", "--out", "x"], "must be 'cpu' or 'cuda[:N]'"),
    (["run", "digits", "--steps", "5", "--eval-every", "0", "--out", "x"], "--eval-every"),
    (["run", "--resume", "--out", "nothing-here"], "holds no cadence run"),
    (["bench", "digits", "--plan", "a=cosine(peak=1)", "--plan", "a=linear(peak=1)"], "name 'a' is given twice"),
    (["bench", "digits", "--plan", "bad name=cosine(peak=1)", "--out", "b"], "candidate name"),
    (["bench", "digits", "--quick"], "--quick is defined for tiny-lm only"),
    (["bench", "digits", "--plan", "a=cosine(peak=1)", "--baseline", "b", "--out", "b"], "--baseline: 'b' is not one"),
    (["run", "digits", "--seed", "-1", "--out", "x"], "--seed: seed must be a whole number from 0 to 4294967295"),
    (["run", "digits", "--seed", "99999999999999999999", "--out", "x"], "--seed"),
    (["run", "digits", "--steps", "10000000000", "--out", "x"], "--steps: horizon is 10000000000 steps; at most"),
    (["run", "tiny-lm", "--batch-size", "100000", "--out", "x"], "--batch-size: batch_size is 100000; at most 1024"),
    (["run", "digits", "--threads", "5000", "--out", "x"], "--threads: threads is 5000; at most 256"),
    (["run", "digits", "--device", "cuda:x", "--out", "x"], "--device"),
    (["run", "--resume", "--steps", "5", "--out", "x"], "a resumed run keeps its own settings: drop --steps"),
    (["run", "digits", "--resume", "--overwrite", "--out", "x"], "contradict"),
    (["run", "digits", "--out", "a\x00b"], "NUL"),
    (["run", "digits", "--out", ""], "--out is empty"),
    (["run", "digits", "--steps", "5", "--out", "/proc/version/x"], "/proc/version/x: Not a directory"),
    (["report", " "], "FOLDER is empty"),
    (["bench", "digits", "--plan", "a=cosine(peak=1)", "--seeds", "5000", "--out", "b"], "--seeds: seeds is 5000; at most 1000"),
    (["bench", "digits", "--plan", "a=cosine(peak=1)", "--jobs", "500", "--out", "b"], "--jobs: jobs is 500; at most 64"),
    (["bench", "digits", "--plan", "a=cosine(peak=1)", "--target", "nan", "--out", "b"], "--target: target must be a finite"),
    (["report", "nowhere"], "holds no cadence comparison"),
])
def test_bad_input_one_line(argv, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("cadence: error:") and err.count("\n") == 1, err
    assert fragment in err


def test_output_folder_rules(tmp_path, capsys):
    own = tmp_path / "mine"
    own.mkdir()
    (own / "notes.txt").write_text("my notes")
    with pytest.raises(CadenceError, match="not empty and holds no cadence run"):
        train(digits_config(horizon=8), own)
    out = tmp_path / "run"
    train(digits_config(horizon=8), out)
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(CadenceError, match=r"holds another run \(complete\); resume it, replace it \(overwrite\)") as e:
        train(digits_config(horizon=8), out)
    assert e.value.field == "out" and "--" not in str(e.value)  # library messages name no flags
    code = main(["run", "digits", "--steps", "8", "--out", str(out), "--no-progress"])
    assert code == 2 and capsys.readouterr().err.startswith(f"cadence: error: --out: {out} holds another run")
    train(digits_config(horizon=9), out, overwrite=True)
    assert (out / "notes.txt").read_text() == "keep me"  # overwriting replaces only the run's own files
    with pytest.raises(CadenceError, match="other settings.*horizon: 9 in the run, 12 asked"):
        train(digits_config(horizon=12), out, resume=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(CadenceError, match="exists and is not a folder"):
        train(digits_config(horizon=8), tmp_path / "file")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete-metrics", "edit-metrics", "short-metrics"])
def test_corrupt_resume_is_a_clear_error(tmp_path, damage, capsys):
    out = tmp_path / "run"
    train(digits_config(), out, stop_after=25)
    metrics = out / "metrics.csv"
    if damage == "truncate":
        data = (out / "checkpoint.pt").read_bytes()
        (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])
        fragment = "unreadable or corrupt"
    elif damage == "garbage":
        (out / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
        fragment = "unreadable or corrupt"
    elif damage == "delete-metrics":
        metrics.unlink()
        fragment = "metrics.csv is missing"
    elif damage == "edit-metrics":  # same number of rows, other bytes: the recorded length tells
        lines = metrics.read_text().splitlines(keepends=True)
        lines[3] = lines[3].replace(",", ",0", 1)
        metrics.write_text("".join(lines))
        fragment = "the checkpoint recorded"
    else:
        metrics.write_text("".join(metrics.read_text().splitlines(keepends=True)[:10]))
        fragment = "has 9 complete rows but the checkpoint is at step 20"
    code = main(["run", "--resume", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and err.count("\n") == 1, err


def test_resume_removes_only_the_temporary_files_cadence_names(tmp_path):
    out = tmp_path / "run"
    train(digits_config(), out, stop_after=25)
    ours = out / ".checkpoint.pt.cadence-tmp"  # what a kill during a checkpoint write leaves behind
    ours.write_bytes(b"half a checkpoint")
    theirs = [out / ".checkpoint.pt.abc123.tmp", out / "notes.tmp"]  # a user's, even if it looks like ours
    for path in theirs:
        path.write_text("not ours")
    train(digits_config(), out, resume=True)
    assert not ours.exists() and all(p.read_text() == "not ours" for p in theirs)


def test_divergence_before_the_first_checkpoint_says_so(tmp_path, capsys):
    out = tmp_path / "nan"
    code = main(["run", "digits", "--lr", "constant(value=1e6)", "--optimizer", "sgd", "--steps", "100",
                 "--checkpoint-every", "50", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1, err
    assert "no checkpoint had been written yet (the first was due at step 50)" in err and "step 0" not in err
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "diverged" and manifest["step"] == 0 and manifest["diverged_at"] < 50
    assert not (out / "checkpoint.pt").exists()
    rows = (out / "metrics.csv").read_text().count("\n") - 1
    assert rows == manifest["diverged_at"]  # the steps before it are kept


def test_resume_keeps_the_run_thread_count_unless_told(tmp_path):
    ref = tmp_path / "ref"
    train(digits_config(), ref, threads=2)
    out = tmp_path / "run"
    train(digits_config(), out, threads=2, stop_after=25)
    torch.set_num_threads(1)
    train(digits_config(), out, resume=True)  # no threads given: the run's own 2
    saved = json.loads((out / "run.json").read_text())
    assert saved["threads"] == 2 and saved["bit_exact"] and len(saved["segments"]) == 1
    assert (out / "metrics.csv").read_bytes() == (ref / "metrics.csv").read_bytes()

    other = tmp_path / "other"
    train(digits_config(), other, threads=2, stop_after=25)
    notes = []
    train(digits_config(), other, resume=True, threads=1, warn=notes.append)
    assert len(notes) == 1 and "1 torch thread(s)" in notes[0] and "not bit-identical" in notes[0]
    saved = json.loads((other / "run.json").read_text())
    assert not saved["bit_exact"] and [s["threads"] for s in saved["segments"]] == [2, 1]
    assert saved["segments"][1]["from_step"] == 20


def test_a_run_folder_in_use_is_refused(tmp_path):
    from cadence.bench.runner import folder_lock

    out = tmp_path / "run"
    train(digits_config(horizon=8), out)
    with folder_lock(out):  # what another process resuming it would hold
        with pytest.raises(CadenceError, match="in use by another cadence process") as e:
            train(digits_config(horizon=8), out, resume=True)
    assert e.value.field == "out"


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("stopped") / "run"
    train(digits_config(), out, stop_after=25)
    return out


def _config_edit(**changes):
    def edit(manifest):
        manifest["config"].update(changes)
        return manifest
    return edit


TAMPERED = [  # (what is done to run.json, a fragment of the one-line error)
    (_config_edit(checkpoint_every=0), "checkpoint_every must be a positive whole number; got 0"),
    (_config_edit(horizon="40"), "config.horizon must be a whole number"),
    (_config_edit(horizon=10**30), "horizon is 1000000000000000000000000000000 steps; at most"),
    (_config_edit(horizon=1e308), "config.horizon must be a whole number"),
    (_config_edit(seed=-3), "seed must be a whole number from 0"),
    (_config_edit(channels={"lr": [3]}), "channel 'lr' must be a schedule spec or a number"),
    (_config_edit(channels="cosine"), "config.channels must be an object"),
    (_config_edit(channels={"lr": "cosine(peak="}), "cannot parse"),
    (_config_edit(channels={"momentum": "cosine(peak=1)"}), "must drive 'lr'"),
    (_config_edit(workload=["digits"]), "config.workload must be a string"),
    (_config_edit(workload="mnist"), "unknown workload 'mnist'"),
    (_config_edit(optimizer="lion"), "unknown optimizer 'lion'"),
    (_config_edit(weight_decay=float("nan")), "weight_decay must be a number >= 0"),
    (_config_edit(device="tpu"), "device must be 'cpu' or 'cuda[:N]'"),
    (_config_edit(surprise=1), "unknown surprise"),
    (lambda m: {**m, "config": {k: v for k, v in m["config"].items() if k != "seed"}}, "missing seed"),
    (lambda m: {**m, "config": None}, "'config' must be an object"),
    (lambda m: {**m, "status": 7}, "status must be one of"),
    (lambda m: {**m, "threads": 0}, "threads must be a whole number from 1 to 256"),
    (lambda m: {**m, "threads": 10**9}, "threads must be a whole number from 1 to 256"),
    (lambda m: {**m, "segments": "x"}, "segments must be a list"),
    (lambda m: {**m, "format": "other"}, "is not a cadence run manifest"),
    (lambda m: [m], "expected a JSON object, found list"),
    (lambda m: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (lambda m: b"\xff\xfe garbage \x00", "not UTF-8"),
    (lambda m: "{'config': }", "is not JSON"),
    (lambda m: "{}" + " " * (1 << 20), "limited to 1,048,576"),
    (lambda m: '{"format": "cadence.run/1", "config": {"steps": 1' + "0" * 5000 + "}}", "is not JSON"),
    (_config_edit(horizon=41), "does not match the checkpoint it was written with (horizon: 40 in the checkpoint, 41"),
    (_config_edit(unit="epoch"), "unit must be 'step', 'sample' or 'token'"),
    (lambda m: {**m, "config": {**{k: v for k, v in m["config"].items() if k not in ("channels", "horizon")}, "plan": {"lr": "cosine(peak=1)"}, "steps": 40}}, "written by cadence 0.1"),
]


@pytest.mark.parametrize("tamper, fragment", TAMPERED, ids=[str(i) for i in range(len(TAMPERED))])
def test_tampered_manifest_is_one_line_exit_2(tamper, fragment, stopped_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(stopped_run, out)
    result = tamper(json.loads((out / "run.json").read_text()))
    if isinstance(result, bytes):
        (out / "run.json").write_bytes(result)
    else:
        (out / "run.json").write_text(result if isinstance(result, str) else json.dumps(result))
    code = main(["run", "--resume", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("cadence: error:") and err.count("\n") == 1, err
    assert fragment in err, err
    assert "--" not in err.split(":", 2)[2][:3]  # a file's fault, not a flag's: no flag prefix


def test_resuming_a_finished_run_without_its_checkpoint_redoes_nothing(tmp_path):
    out = tmp_path / "run"
    train(digits_config(horizon=8), out)
    (out / "checkpoint.pt").unlink()  # to save disk, once the run is done
    before = (out / "metrics.csv").stat().st_mtime_ns
    manifest = train(digits_config(horizon=8), out, resume=True)
    assert manifest["status"] == "complete" and (out / "metrics.csv").stat().st_mtime_ns == before


def test_folder_checks_close_what_they_open(tmp_path):
    import gc
    import warnings

    from cadence.bench.runner import has_user_files

    for name in ("a", "b", "c"):
        (tmp_path / name).write_text(name)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert has_user_files(tmp_path)  # stops at the first entry: the directory listing must still be closed
        gc.collect()
    assert not [w for w in seen if issubclass(w.category, ResourceWarning)]


def test_controllers_report_their_state_in_metrics_csv(tmp_path):
    """metrics.csv logs each controller's state after the step: a plateau's scale and drops, noise_batch's B_simple."""
    import pandas as pd

    cfg = digits_config(channels={"lr": "plateau(cosine(peak=0.05), monitor='train_loss', patience=0, factor=0.5)",
                                  "batch": "noise_batch(start=64, max=256, min_observations=3)"},
                        horizon=30, micro_batch=32, eval_every=3)
    train(cfg, tmp_path / "run")
    m = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert {"lr.scale", "lr.reductions", "batch.b_simple"} <= set(m.columns)
    drops = int(m["lr.reductions"].iloc[-1])
    assert drops >= 1 and m["lr.scale"].iloc[-1] == 0.5 ** drops
    assert (m["lr.reductions"].diff().fillna(0) >= 0).all()
    assert m["batch.b_simple"].notna().sum() >= 25 and (m["batch.b_simple"].dropna() > 0).all()


def test_a_number_written_as_text_is_a_constant_channel():
    from cadence.plan import Plan

    plan = Plan({"lr": "1e-3", "batch": "256"}, horizon=10, micro_batch=32)
    assert plan.values() == {"lr": 1e-3, "batch": 256}
