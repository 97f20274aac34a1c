"""Continual pre-training's building blocks: starting from a finished run, dense evaluation, the stability gap."""

import hashlib
import json
import math
import shutil

import numpy as np
import pytest
import torch

from cadence.bench.continual import (Init, check_fits, check_record, dense_steps, is_dense_eval, model_of, read_init,
                                     stability_gap, verify)
from cadence.bench.report import load_metrics
from cadence.bench.runner import RunConfig, train
from cadence.bench.workloads import WORKLOADS
from cadence.errors import CadenceError, RunError

NAN = float("nan")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A complete tiny-lm xs run of 3 steps (a few seconds)."""
    out = tmp_path_factory.mktemp("continual") / "a"
    cfg = RunConfig(workload="tiny-lm", channels={"lr": "constant(1e-3)"}, horizon=3, size="xs", batch_size=4,
                    eval_every=3, checkpoint_every=3)
    manifest = train(cfg, out, threads=1)
    assert manifest["status"] == "complete" and manifest["step"] == 3
    return out


def copy_run(finished, tmp_path, name="b"):
    dest = tmp_path / name
    shutil.copytree(finished, dest)
    return dest


def one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text and excinfo.value.field in ("init", "column", "baseline", "switch", "tolerance", "dense_eval")
    return text


# -- read_init ---------------------------------------------------------------------------------

def test_read_init_loads_the_checkpoints_weights_and_records_it(finished):
    init = read_init(finished, workload="tiny-lm", size="xs", optimizer=False)
    saved = torch.load(finished / "checkpoint.pt", weights_only=True)
    assert set(init.model) == set(saved["model"]) and all(torch.equal(init.model[k], saved["model"][k])
                                                          for k in saved["model"])
    assert init.optimizer is None
    digest = hashlib.sha256((finished / "checkpoint.pt").read_bytes()).hexdigest()[:16]
    assert init.record == {"run": str(finished.resolve()), "workload": "tiny-lm", "size": "xs", "step": 3,
                           "checkpoint": digest, "optimizer": False}
    json.dumps(init.record)  # JSON-safe: the new run.json stores it
    again = read_init(str(finished), workload="tiny-lm", size="xs", optimizer=True)
    assert again.record["checkpoint"] == digest and again.record["optimizer"] is True
    assert again.optimizer["param_groups"] and again.optimizer["state"]
    assert check_record(again.record) is again.record and verify(again.record) is None

    fresh = WORKLOADS["tiny-lm"]().model("xs")
    check_fits(fresh, init)
    fresh.load_state_dict(init.model)  # what the runner will do
    assert all(torch.equal(p, init.model[k]) for k, p in fresh.state_dict().items())


def test_text_and_tiny_lm_share_their_model_and_may_start_from_each_other(finished):
    assert model_of("text") == model_of("tiny-lm") == "tiny-lm" and model_of("digits") != model_of("digits-cnn")
    for size in WORKLOADS["tiny-lm"].sizes:  # the same architecture at every size: the pairing is safe
        a, b = WORKLOADS["tiny-lm"]().model(size), WORKLOADS["text"]().model(size)
        assert type(a) is type(b) and {k: v.shape for k, v in a.state_dict().items()} == \
            {k: v.shape for k, v in b.state_dict().items()}
    init = read_init(finished, workload="text", size="xs", optimizer=True)
    check_fits(WORKLOADS["text"]().model("xs"), init)


def test_a_text_run_starts_a_tiny_lm_run_even_after_its_data_moved(tmp_path):
    data = tmp_path / "data"
    (data / "old").mkdir(parents=True)
    for k in range(6):
        (data / "old" / f"f{k}.txt").write_text("".join(f"The fox {i + 100 * k} jumps. " for i in range(60)))
    cfg = RunConfig(workload="text", data=str(data), size="xs", channels={"lr": "constant(1e-3)"}, horizon=2,
                    batch_size=4, eval_every=2, checkpoint_every=2)
    assert train(cfg, tmp_path / "a", threads=1)["status"] == "complete"
    data.rename(tmp_path / "moved")  # the weights do not need the data they were trained on
    init = read_init(tmp_path / "a", workload="tiny-lm", size="xs", optimizer=True)
    assert init.record["workload"] == "text" and init.record["step"] == 2
    check_fits(WORKLOADS["tiny-lm"]().model("xs"), init)


@pytest.mark.parametrize("status", ["running", "stopped", "interrupted", "diverged"])
def test_an_unfinished_run_is_refused_naming_its_status(finished, tmp_path, status):
    run = copy_run(finished, tmp_path)
    manifest = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**manifest, "status": status}))
    with pytest.raises(RunError) as e:
        read_init(run, workload="tiny-lm", size="xs", optimizer=False)
    assert f"is {status}" in one_line(e) and "only a complete run" in str(e.value)


@pytest.mark.parametrize("workload, size, said", [
    ("tiny-lm", "small", "trained tiny-lm size xs; this run is tiny-lm size small"),
    ("digits", "small", "this run is digits size small: the model must be the same"),
])
def test_another_model_is_refused(finished, workload, size, said):
    with pytest.raises(RunError) as e:
        read_init(finished, workload=workload, size=size, optimizer=False)
    assert said in one_line(e)


def test_missing_folders_and_broken_checkpoints_are_refused(finished, tmp_path):
    cases = []
    cases.append((tmp_path / "nowhere", "does not exist"))
    (tmp_path / "empty").mkdir()
    cases.append((tmp_path / "empty", "not a cadence run folder (no run.json)"))
    (tmp_path / "file").write_text("x")
    cases.append((tmp_path / "file", "is not a folder"))
    torn = copy_run(finished, tmp_path, "torn")
    data = (torn / "checkpoint.pt").read_bytes()
    (torn / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    cases.append((torn, "unreadable or corrupt"))
    gone = copy_run(finished, tmp_path, "gone")
    (gone / "checkpoint.pt").unlink()
    cases.append((gone, "has no checkpoint.pt"))
    bad_json = copy_run(finished, tmp_path, "bad-json")
    (bad_json / "run.json").write_text("{not json")
    cases.append((bad_json, "init run: "))
    foreign = copy_run(finished, tmp_path, "foreign")
    (foreign / "run.json").write_text(json.dumps({"format": "other/1", "config": {}}))
    cases.append((foreign, "is not a cadence run manifest"))
    other_step = copy_run(finished, tmp_path, "other-step")
    manifest = json.loads((other_step / "run.json").read_text())
    (other_step / "run.json").write_text(json.dumps({**manifest, "step": 2}))
    cases.append((other_step, "is at step 3, but run.json says the run completed at step 2"))
    code = copy_run(finished, tmp_path, "code")  # a pickle that would run code is refused, never executed
    torch.save({"model": {"w": torch.zeros(1)}, "step": 3, "evil": print}, code / "checkpoint.pt")
    cases.append((code, "unreadable or corrupt"))
    for folder, said in cases:
        with pytest.raises(RunError) as e:
            read_init(folder, workload="tiny-lm", size="xs", optimizer=False)
        assert said in one_line(e), (folder.name, str(e.value))


def test_check_fits_refuses_other_shapes_keys_and_optimizers(finished):
    init = read_init(finished, workload="tiny-lm", size="xs", optimizer=True)
    with pytest.raises(RunError) as e:
        check_fits(WORKLOADS["tiny-lm"]().model("small"), init)
    assert "do not fit this run's model (missing blocks.2." in one_line(e) and "vs [128]" in str(e.value)
    model = WORKLOADS["tiny-lm"]().model("xs")
    name = next(k for k, v in init.model.items() if v.ndim == 2)
    reshaped = Init({**init.model, name: init.model[name][:1]}, None, init.record)
    with pytest.raises(RunError, match=rf"\(shapes {name} \[1, "):
        check_fits(model, reshaped)
    dropped = Init({k: v for k, v in list(init.model.items())[1:]}, None, init.record)
    with pytest.raises(RunError, match=r"\(missing "):
        check_fits(model, dropped)

    def optimizer(kind):
        decay = [p for p in model.parameters() if p.ndim >= 2]
        rest = [p for p in model.parameters() if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=1.0) if kind == "adamw" else torch.optim.SGD(groups, lr=1.0, momentum=0.9)

    adamw = optimizer("adamw")
    check_fits(model, init, adamw)
    adamw.load_state_dict(init.optimizer)  # fits: torch agrees
    with pytest.raises(RunError) as e:
        check_fits(model, init, optimizer("sgd"))
    assert "the optimizer must be the same kind" in one_line(e)
    one_group = torch.optim.AdamW(model.parameters(), lr=1.0)
    with pytest.raises(RunError, match="param groups of"):
        check_fits(model, init, one_group)


def test_verify_tells_whether_the_init_checkpoint_changed(finished, tmp_path):
    run = copy_run(finished, tmp_path)
    record = read_init(run, workload="tiny-lm", size="xs", optimizer=False).record
    assert verify(record) is None and verify(dict(record)) is None
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name] + 1
    torch.save(state, run / "checkpoint.pt")
    assert "changed since this run started from it" in verify(record)
    (run / "checkpoint.pt").unlink()
    assert "cannot be read" in verify(record)
    assert "init record must be" in verify({**record, "step": "3"})
    with pytest.raises(RunError, match="init record must be"):
        check_record({**record, "extra": 1})


# -- dense evaluation ---------------------------------------------------------------------------

def test_dense_evaluation_window():
    assert dense_steps(100, 10, 50) == range(110, 151, 10)
    assert [s for s in range(90, 170) if is_dense_eval(s, switch=100, every=10, until=50)] == [110, 120, 130, 140, 150]
    assert [s for s in range(0, 8) if is_dense_eval(s, switch=0, every=2, until=5)] == [2, 4]
    assert list(dense_steps(3, 1, 0)) == []
    for bad in (dict(switch=-1, every=1, until=5), dict(switch=0, every=0, until=5), dict(switch=0, every=1, until=1.5)):
        with pytest.raises(CadenceError) as e:
            dense_steps(**bad)
        one_line(e)


# -- the stability gap --------------------------------------------------------------------------

def table(values, steps=None):
    steps = list(range(len(values))) if steps is None else steps
    return {"step": np.array(steps, dtype=float), "val_loss/old": np.array(values, dtype=float),
            "val_loss": np.full(len(values), NAN)}


def test_a_dip_and_its_recovery():
    #        0    1    2    3    4    5    6    7    8     9     10
    m = table([NAN, 2.2, NAN, 2.0, NAN, 2.5, NAN, 2.3, 2.05, 2.01, 1.9])
    gap = stability_gap(m, "val_loss/old", 5)
    assert gap["baseline"] == 2.0  # the last measured point before the switch (step 3), not step 1's
    assert gap["depth"] == 0.5 and gap["depth_rel"] == 0.25 and gap["peak_step"] == 5 and gap["peak"] == 2.5
    assert gap["recovery_step"] == 9 and gap["length"] == 5 and gap["recovered"] is True  # steps 5..9 on new data
    assert gap["points"] == 5  # steps 5, 7, 8, 9, 10: NaN rows ignored
    json.dumps(gap)
    loose = stability_gap(m, "val_loss/old", 5, tolerance=0.03)  # 2.05 is within 3% of 2.0
    assert loose["recovery_step"] == 8 and loose["length"] == 4
    given = stability_gap(m, "val_loss/old", 5, baseline=2.5)  # nothing above the band: no gap
    assert given["depth"] == 0 and given["length"] == 0 and given["recovered"] is True


def test_a_gap_that_never_closes_and_a_loss_that_never_rises():
    m = table([2.0, 2.0, 2.6, 2.4, 2.2, 2.1])
    gap = stability_gap(m, "val_loss/old", 2)
    assert gap["recovered"] is False and gap["length"] is None and gap["recovery_step"] is None
    assert gap["depth"] == pytest.approx(0.6) and gap["peak_step"] == 2
    flat = stability_gap(table([2.0, 2.0, 1.9, 1.95, 1.8]), "val_loss/old", 2)
    assert flat["depth"] == 0.0 and flat["depth_rel"] == 0.0 and flat["length"] == 0 and flat["recovered"] is True
    assert flat["peak_step"] == 3 and flat["points"] == 3
    small = stability_gap(table([2.0, 2.0, 2.01, 1.99]), "val_loss/old", 2)  # a rise inside the 1% band is no gap
    assert small["depth"] == pytest.approx(0.01) and small["length"] == 0
    late = stability_gap(table([2.0, 1.9, 2.4, 2.3, 1.91], steps=[10, 20, 30, 40, 50]), "val_loss/old", 25)
    assert late["baseline"] == 1.9 and late["peak_step"] == 30 and late["recovery_step"] == 50 and late["length"] == 26


def test_a_run_started_from_another_takes_its_baseline(finished):
    m = table([2.6, NAN, 2.3, 2.1, 1.95])
    gap = stability_gap(m, "val_loss/old", 0, baseline=2.0)
    assert gap["peak_step"] == 0 and gap["depth"] == pytest.approx(0.6) and gap["recovery_step"] == 4
    assert gap["length"] == 5 and gap["points"] == 4
    real = load_metrics(finished / "metrics.csv")  # the runner's table: measured at the last step only
    assert stability_gap(real, "val_loss", 0, baseline=10.0)["points"] == 1


def test_stability_gap_refusals():
    m = table([2.0, 2.0, NAN, NAN])
    cases = [
        (dict(metrics=m, column="val_loss/new", switch=1), "no column 'val_loss/new' (validation columns: val_loss/old, val_loss)"),
        (dict(metrics=m, column="val_loss/old", switch=2), "no measured point at or after the switch (step 2)"),
        (dict(metrics=table([2.5, 2.4]), column="val_loss/old", switch=0), "no measured point before the switch"),
        (dict(metrics=table([NAN, 2.4]), column="val_loss/old", switch=1), "no measured point before the switch"),
        (dict(metrics=m, column="val_loss/old", switch=1, baseline=NAN), "must be a finite number > 0; got nan"),
        (dict(metrics=m, column="val_loss/old", switch=1, baseline=0.0), "must be a finite number > 0"),
        (dict(metrics=m, column="val_loss/old", switch=1, tolerance=-0.1), "tolerance must be"),
        (dict(metrics=m, column="val_loss/old", switch=-1), "switch must be"),
    ]
    for kwargs, said in cases:
        with pytest.raises(CadenceError) as e:
            stability_gap(**kwargs)
        assert said in one_line(e), str(e.value)
    assert math.isfinite(stability_gap(m, "val_loss/old", 1)["depth"])
