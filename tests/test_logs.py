"""What a run shows while it trains: TensorBoard scalars, progress on stderr, tiny-lm's monitors."""

import copy
import csv
import functools
import io
import json
import math
import os
import re
import sys

import numpy as np
import pytest
import torch

from cadence.bench import logs, workloads
from cadence.bench.logs import Progress, auto_progress, duration, progress_mode
from cadence.bench.runner import RunConfig, train
from cadence.bench.workloads import TinyLM, data_progress, get_workload
from cadence.cli import main
from cadence.errors import CadenceError
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # the test command installs it


def logreg(**kw):
    base = dict(workload="logreg", channels={"lr": "cosine(peak=0.1, warmup=4)", "weight_decay": "linear(peak=1e-3)"},
                horizon=20, eval_every=5, checkpoint_every=5)
    base.update(kw)
    return RunConfig(**base)


def csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def scalars(folder) -> dict:
    """{tag: [(step, value), ...]} as TensorBoard shows them (restart markers applied)."""
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def assert_same_as_csv(board: dict, rows: list[dict]) -> None:
    columns = [c for c in rows[0] if c != "step"]
    assert set(board) == {c for c in columns if any(r[c] not in ("", "nan") for r in rows)}
    for column in columns:
        want = [(int(r["step"]), float(np.float32(float(r[column])))) for r in rows if r[column] not in ("", "nan")]
        got = board.get(column, [])
        assert [s for s, _ in got] == [s for s, _ in want], column  # every step once, in order
        assert [v for _, v in got] == [v for _, v in want], column  # the values, as 32-bit floats


# -- TensorBoard -----------------------------------------------------------------------------

def test_tensorboard_holds_every_metrics_column_and_value(tmp_path):
    manifest = train(logreg(), tmp_path / "run", tensorboard=tmp_path / "tb")
    rows = csv_rows(tmp_path / "run" / "metrics.csv")
    board = scalars(tmp_path / "tb")
    assert {"lr", "weight_decay", "train_loss", "grad_norm", "samples", "tokens", "val_loss", "val_accuracy"} <= set(board)
    assert_same_as_csv(board, rows)
    assert [s for s, _ in board["val_loss"]] == [4, 9, 14, 19]  # empty cells are not logged
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["tensorboard"] == manifest["tensorboard"] == os.path.abspath(tmp_path / "tb")
    assert "tensorboard" not in saved["config"]  # an output location, not a setting


def test_resume_logs_each_step_once_and_may_log_elsewhere(tmp_path):
    run = tmp_path / "run"
    train(logreg(), run, stop_after=13, tensorboard=tmp_path / "tb")  # rows 10-12 are written again on resume
    assert [s for s, _ in scalars(tmp_path / "tb")["train_loss"]] == list(range(13))
    train(logreg(), run, resume=True, tensorboard=tmp_path / "tb")
    rows = csv_rows(run / "metrics.csv")
    board = scalars(tmp_path / "tb")
    assert len(list((tmp_path / "tb").iterdir())) == 2  # one event file per process; none is edited
    assert_same_as_csv(board, rows)
    assert [s for s, _ in board["train_loss"]] == list(range(20))
    # a run resumed without it, or into another folder: the settings are the same run's
    train(logreg(horizon=30), tmp_path / "two", stop_after=10)
    train(logreg(horizon=30), tmp_path / "two", resume=True, tensorboard=tmp_path / "later")
    assert [s for s, _ in scalars(tmp_path / "later")["train_loss"]] == list(range(10, 30))


def test_a_rollback_logs_the_steps_it_trains_again_once(tmp_path, monkeypatch):
    w = get_workload("logreg")
    clean = type(w).batch
    monkeypatch.setattr(w, "batch", lambda seed, i, n: (lambda x, y: (x, 1 - y) if i in (26, 28) else (x, y))(
        *clean(w, seed, i, n)))  # two spikes (every label wrong): back to the checkpoint of step 20
    guards = {"loss_spike": {"min_history": 16, "window": 32}, "rollback": {"spikes": 2}}
    manifest = train(logreg(horizon=40, checkpoint_every=10, guards=guards), tmp_path / "run", warn=lambda m: None,
                     tensorboard=tmp_path / "tb")
    assert manifest["rollbacks"] == [{"at_step": 27, "to_step": 20, "drawn": 29, "skipped": 2}]
    board = scalars(tmp_path / "tb")
    assert_same_as_csv(board, csv_rows(tmp_path / "run" / "metrics.csv"))
    assert [s for s, _ in board["train_loss"]] == list(range(40))


def test_without_tensorboard_installed_one_line_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if it were not installed
    with pytest.raises(CadenceError, match=re.escape("pip install 'cadence[tensorboard]'")) as e:
        train(logreg(), tmp_path / "run", tensorboard=tmp_path / "tb")
    assert "\n" not in str(e.value) and "--" not in str(e.value)
    assert not (tmp_path / "run").exists() and not (tmp_path / "tb").exists()  # refused before anything is written
    code = main(["run", "logreg", "--steps", "5", "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("cadence: error:") and "cadence[tensorboard]" in err


def test_tensorboard_from_the_cli_and_a_plan_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plan.yaml").write_text("horizon: 10\nchannels:\n  lr: constant(value=0.05)\neval_every: 5\n"
                                        "tensorboard: tb\n")
    code = main(["run", "logreg", "--plan", "plan.yaml", "--out", "run", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0 and err == "" and "tensorboard: tb" in out
    assert_same_as_csv(scalars(tmp_path / "tb"), csv_rows(tmp_path / "run" / "metrics.csv"))
    assert "tensorboard" not in json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    code = main(["run", "logreg", "--plan", "plan.yaml", "--out", "again", "--tensorboard", "x", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--tensorboard and the plan file's tensorboard both set it" in err
    (tmp_path / "file").write_text("mine")
    code = main(["run", "--resume", "--out", "run", "--tensorboard", "file", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is not a folder" in err
    assert (tmp_path / "file").read_text() == "mine"


# -- progress --------------------------------------------------------------------------------

LINE = re.compile(r"^logreg seed 0: step (\d+)/40 \((\d+)%\), loss \d+\.\d{4}, [\d.]+ s elapsed, (ETA \S+( \S+)?|done)$")


def test_lines_every_5_percent_and_none_after_the_end(tmp_path, capsys):
    train(logreg(horizon=40, checkpoint_every=10), tmp_path / "run", progress="lines")
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert all(LINE.match(line) for line in lines), lines
    assert [int(LINE.match(line).group(1)) for line in lines] == list(range(2, 41, 2))
    assert "(100%)" in lines[-1] and lines[-1].endswith("done") and "ETA" in lines[0]
    # a resume goes on from where it is: the next multiple of 5% after the checkpoint
    train(logreg(horizon=40, checkpoint_every=10), tmp_path / "again", stop_after=15, progress=None)
    assert capsys.readouterr().err == ""
    train(logreg(horizon=40, checkpoint_every=10), tmp_path / "again", resume=True, progress="lines")
    steps = [int(LINE.match(line).group(1)) for line in capsys.readouterr().err.splitlines()]
    assert steps == list(range(12, 41, 2))


@pytest.fixture
def eager_tqdm(monkeypatch):
    """tqdm redrawing at every update (it otherwise waits 0.1 s between redraws)."""
    from tqdm import tqdm

    monkeypatch.setattr(logs, "_tqdm", lambda: functools.partial(tqdm, mininterval=0, miniters=1))


def test_bar_when_forced_and_the_old_boolean(tmp_path, capsys, eager_tqdm):
    train(logreg(horizon=8), tmp_path / "bar", progress="bar")
    err = capsys.readouterr().err
    assert "logreg seed 0" in err and "loss=" in err and "lr=" in err and "8/8" in err
    assert re.search(r"\d/8 \[\d\d:\d\d<\d\d:\d\d", err)  # tqdm's elapsed<ETA
    train(logreg(horizon=8), tmp_path / "true", progress=True)  # True is the bar, as before
    assert "loss=" in capsys.readouterr().err
    train(logreg(horizon=8), tmp_path / "false", progress=False)
    assert capsys.readouterr().err == ""
    with pytest.raises(CadenceError, match="progress must be 'bar', 'lines'"):
        train(logreg(horizon=8), tmp_path / "bad", progress="loud")


def test_the_cli_prints_lines_when_not_on_a_terminal(tmp_path, capsys):
    code = main(["run", "logreg", "--steps", "20", "--eval-every", "5", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.splitlines()
    assert code == 0 and len(err) == 20 and err[-1].startswith("logreg seed 0: step 20/20 (100%)")


def test_progress_on_a_sample_clock_and_its_helpers():
    stream = io.StringIO()
    shown = Progress("lines", "x", 1000, unit="sample", stream=stream, every=0.25)
    for step, position in enumerate(range(96, 1100, 96), 1):  # batches of 96 samples: lines when passing 25% marks
        shown.update(min(position, 1000), step, loss=1.5)
    lines = stream.getvalue().splitlines()
    assert [re.search(r"step \d+, (.*?\)),", line).group(1) for line in lines] == [
        "288/1,000 samples (28%)", "576/1,000 samples (57%)", "768/1,000 samples (76%)", "1,000/1,000 samples (100%)"]
    assert lines[0].startswith("x: step 3, ") and lines[-1].startswith("x: step 11, ") and lines[-1].endswith("done")
    assert duration(12.34) == "12.3 s" and duration(230) == "3m 50s" and duration(7500) == "2h 05m"
    assert progress_mode(True) == "bar" and progress_mode(False) is None and progress_mode("lines") == "lines"

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert auto_progress(Terminal()) == "bar" and auto_progress(io.StringIO()) == "lines"


@pytest.fixture
def small_stdlib(tmp_path, monkeypatch):
    """tiny-lm's data read from a small folder instead of the standard library."""
    root = tmp_path / "lib"
    root.mkdir()
    for i in range(30):
        (root / f"m{i}.py").write_text(f"x = {i}\n" * 400)
    monkeypatch.setattr(workloads.sysconfig, "get_paths", lambda: {"stdlib": str(root)})
    return root


def test_reading_tiny_lm_data_is_shown_when_asked(small_stdlib, capsys, eager_tqdm):
    TinyLM()._corpus()
    assert capsys.readouterr().err == ""  # not asked: silent
    with data_progress("lines"):
        w = TinyLM()
        w._corpus()
        w._corpus()  # already read: nothing more
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"tiny-lm: reading the Python standard library's source under {small_stdlib}"
    assert re.fullmatch(r"tiny-lm: read 30 files, 0\.\d MB, in [\d.]+ s", lines[1]) and len(lines) == 2
    with data_progress("bar"):
        TinyLM()._corpus()
    err = capsys.readouterr().err
    assert "tiny-lm: reading:" in err and "30/30" in err and "MB" in err and "file/s" in err


# -- tiny-lm monitors ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lm():
    w = get_workload("tiny-lm")
    torch.manual_seed(0)
    return w, w.model("xs"), w.batch(0, 0, 4)


def brute_force_attention_max(model, x) -> float:
    """Every layer's q.k / sqrt(d_head) over causal positions, from hooks on the qkv projections."""
    seen = []
    hooks = [b.qkv.register_forward_hook(lambda m, i, out, b=b: seen.append((b, out))) for b in model.blocks]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    best = -math.inf
    for block, out in seen:
        n, t, d = out.shape
        q, k, _ = out.view(n, t, 3, block.heads, d // 3 // block.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        best = max(best, float(scores[..., causal].max()))
    return best


def test_monitors_are_the_last_training_pass_values(lm):
    w, model, (x, y) = lm
    assert w.monitor_names == ("attn_logit_max", "logit_max") and get_workload("digits").monitor_names == ()
    fresh = w.model("xs")
    assert all(math.isnan(v) for v in w.monitors(fresh).values())  # nothing measured yet
    model.train()
    logits = model(x)
    got = w.monitors(model)
    assert set(got) == set(w.monitor_names) and all(math.isfinite(v) and v > 0 for v in got.values())
    assert got["logit_max"] == float(logits.detach().abs().max())
    assert got["attn_logit_max"] == pytest.approx(brute_force_attention_max(model, x), rel=1e-5)
    model.eval()
    model(x[:1])  # an evaluation pass does not replace them
    assert w.monitors(model) == got
    # the costly one only every monitor_every steps when the step is given; the cheap one always
    at = w.monitors(model, step=w.monitor_every + 1)
    assert math.isnan(at["attn_logit_max"]) and at["logit_max"] == got["logit_max"]
    assert w.monitors(model, step=2 * w.monitor_every) == got

    class Wrapped(torch.nn.Module):  # DistributedDataParallel keeps the model in .module
        def __init__(self, inner):
            super().__init__()
            self.module = inner

    assert w.monitors(Wrapped(model)) == got


def test_monitors_grow_with_the_weights(lm):
    w, model, (x, y) = lm

    def measured(net):
        net.train()
        net(x)
        return w.monitors(net)

    before = measured(model)
    sharper = copy.deepcopy(model)
    with torch.no_grad():
        for block in sharper.blocks:  # q and k three times larger: attention logits nine times
            block.qkv.weight.mul_(3)
            block.qkv.bias.mul_(3)
    assert measured(sharper)["attn_logit_max"] == pytest.approx(9 * before["attn_logit_max"], rel=1e-4)
    louder = copy.deepcopy(model)
    with torch.no_grad():  # the final norm's output twice as large: output logits twice
        louder.ln.weight.mul_(2)
        louder.ln.bias.mul_(2)
    after = measured(louder)
    assert after["logit_max"] == pytest.approx(2 * before["logit_max"], rel=1e-5)
    assert after["attn_logit_max"] == before["attn_logit_max"]


def test_monitoring_leaves_loss_and_gradients_bit_identical(lm):
    w, model, batch = lm
    model.train()

    def loss_and_grads(measure: bool):
        model.zero_grad(set_to_none=True)
        loss = w.loss(model, batch)
        if measure:
            w.monitors(model)
        loss.backward()
        return loss.detach().clone(), [p.grad.clone() for p in model.parameters()]

    plain_loss, plain = loss_and_grads(False)
    loss, grads = loss_and_grads(True)
    assert torch.equal(loss, plain_loss) and all(torch.equal(a, b) for a, b in zip(grads, plain))
    model.eval()  # no recording at all in evaluation mode: the same forward numbers
    with torch.no_grad():
        evaluated = w.loss(model, batch)
    assert torch.equal(evaluated, plain_loss)
