"""Continual pre-training through the runner: --init, replay as a mixture, dense evaluation, the stability gap."""

import json
import shutil

import numpy as np
import pytest
import torch

from cadence.bench.report import load_metrics
from cadence.bench.runner import RunConfig, train
from cadence.cli import main
from cadence.errors import CadenceError, RunError

from test_text_workload import make_corpus


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished text run on two domains (numbers, prose), and a corpus that adds a third (code)."""
    root = tmp_path_factory.mktemp("continual")
    both = make_corpus(root / "corpus")
    old = root / "old"
    for d in ("numbers", "prose"):
        shutil.copytree(both / d, old / d)
    train(RunConfig(workload="text", data=str(old), size="xs", horizon=16, batch_size=8, eval_every=8,
                    channels={"lr": "cosine(peak=3e-3, warmup=2)"}), root / "a", threads=1)
    return root, both


def config(root, both, **kw):
    base = dict(workload="text", data=str(both), size="xs", horizon=12, batch_size=8, eval_every=6, checkpoint_every=4,
                init=str(root / "a"), channels={"lr": "warmup(cosine(peak=2e-3), 3)",
                                                "mixture": {"code": 0.9, "numbers": 0.05, "prose": 0.05}})
    base.update(kw)
    return RunConfig(**base)


def test_a_run_starts_from_the_weights_of_a_finished_run_and_resumes_exactly(finished, tmp_path):
    root, both = finished
    cfg = config(root, both, init_optimizer=True)
    manifest = train(cfg, tmp_path / "b", threads=1)
    train(cfg, tmp_path / "c", threads=1, stop_after=6)
    train(cfg, tmp_path / "c", threads=1, resume=True)
    assert (tmp_path / "b" / "metrics.csv").read_bytes() == (tmp_path / "c" / "metrics.csv").read_bytes()
    record = manifest["config"]["init"]
    assert record["run"] == str(root / "a") and record["step"] == 16 and record["optimizer"] is True
    assert manifest["config"]["dense_eval"] == [1, 12]  # the default: every eval_every // 10 steps for 2 * eval_every
    m = load_metrics(tmp_path / "b" / "metrics.csv")
    assert np.isfinite(m["val_loss/numbers"]).all()  # evaluated at every step of the dense window
    # the first step's training loss on an old domain is the finished run's level, not a fresh model's (5.5)
    assert m["train_loss/numbers"][0] < 4.5 or np.isnan(m["train_loss/numbers"][0])
    fresh = train(config(root, both, init=None, dense_eval=[1, 12]), tmp_path / "scratch", threads=1)
    first = load_metrics(tmp_path / "scratch" / "metrics.csv")
    assert m["val_loss/numbers"][0] < first["val_loss/numbers"][0] - 1.0
    assert "stability_gap" not in fresh
    gap = manifest["stability_gap"]
    assert set(gap) == {"val_loss/numbers", "val_loss/prose"}  # the domains the finished run had
    a = load_metrics(root / "a" / "metrics.csv")
    assert gap["val_loss/prose"]["baseline"] == pytest.approx(a["val_loss/prose"][-1])
    assert gap["val_loss/prose"]["depth"] == pytest.approx(max(0.0, np.nanmax(m["val_loss/prose"]) -
                                                               a["val_loss/prose"][-1]))
    json.dumps(gap)  # plain data in run.json


def test_the_optimizer_state_comes_only_when_asked_and_keeps_this_runs_settings(finished, tmp_path):
    root, both = finished
    from cadence.bench.runner import make_loop, resolve
    from cadence.bench.runner import _start_from
    from cadence.bench.workloads import get_workload

    for with_optimizer in (False, True):
        cfg, plan = resolve(config(root, both, init_optimizer=with_optimizer, weight_decay=0.3))
        loop = make_loop(cfg, get_workload("text", cfg.data), plan)
        _start_from(loop, cfg)
        saved = torch.load(root / "a" / "checkpoint.pt", weights_only=True)
        assert all(torch.equal(loop.model.state_dict()[k], v) for k, v in saved["model"].items())
        assert bool(loop.opt.state) is with_optimizer
        assert loop.opt.param_groups[0]["weight_decay"] == 0.3


def test_bad_init_settings_are_refused_before_training(finished, tmp_path):
    root, both = finished
    with pytest.raises(CadenceError, match="give init too"):
        config(root, both, init=None, init_optimizer=True).resolved()
    with pytest.raises(RunError, match="does not exist|not a"):
        config(root, both, init=str(tmp_path / "nowhere")).resolved()
    with pytest.raises(CadenceError, match="size"):
        config(root, both, size="s").resolved()
    with pytest.raises(CadenceError, match="dense_eval must be"):
        config(root, both, dense_eval=[0, 5]).resolved()
    cfg = config(root, both)
    train(cfg, tmp_path / "b", threads=1, stop_after=2)  # killed before its first checkpoint ...
    copy = tmp_path / "a-copy"
    shutil.copytree(root / "a", copy)
    cfg2 = config(root, both, init=str(copy))
    train(cfg2, tmp_path / "d", threads=1, stop_after=2)
    saved = torch.load(copy / "checkpoint.pt", weights_only=True)
    saved["model"] = {k: v + 1 for k, v in saved["model"].items()}
    torch.save(saved, copy / "checkpoint.pt")  # ... and the run it starts from changed since: refused
    with pytest.raises(RunError, match=r"init: \S+a-copy \(checkpoint sha256 \w+\) in the run, \S+a-copy \(checkpoint "
                                       r"sha256 \w+\) asked"):
        train(cfg2, tmp_path / "d", threads=1, resume=True)
    code = main(["run", "--resume", "--out", str(tmp_path / "d"), "--no-progress"])  # the settings of run.json
    assert code == 2


def test_old_manifests_without_the_continual_fields_still_load(tmp_path):
    train(RunConfig(workload="logreg", channels={"lr": "constant(value=0.1)"}, horizon=4), tmp_path / "r")
    saved = json.loads((tmp_path / "r" / "run.json").read_text())
    for key in ("init", "init_optimizer", "dense_eval"):
        del saved["config"][key]
    (tmp_path / "r" / "run.json").write_text(json.dumps(saved))
    assert train(RunConfig(workload="logreg", channels={"lr": "constant(value=0.1)"}, horizon=4), tmp_path / "r",
                 resume=True)["status"] == "complete"
