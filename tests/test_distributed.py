"""`torchrun -m cadence run` on CPU (gloo): the same run as one process, and exact kill-and-resume.

Each case starts real processes with torchrun (a few seconds each), so the runs are short.
The tolerance for losses (1e-5 relative) is what summing gradients across processes in
another order costs in float32: measured at 1e-7 over 30 digits steps (docs/integrations.md).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BIN = Path(sys.executable).parent
RUN = ["digits", "--horizon", "3200sa", "--unit", "sample", "--micro-batch", "16", "--eval-every", "10",
       "--checkpoint-every", "10", "--set", "batch=ramp(32, 128, '50%', shape='doubling')"]


def cadence(args, out, procs=1, kill_at=None, check=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("CADENCE_KILL_AT", None)
    if kill_at:
        env["CADENCE_KILL_AT"] = kill_at
    if procs == 1:
        cmd = [str(BIN / "cadence"), "run", *args, "--out", str(out), "--threads", "1"]
    else:
        cmd = [str(BIN / "torchrun"), "--standalone", f"--nproc_per_node={procs}", "-m", "cadence", "run", *args,
               "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same plan in one process and in two (batch ramp, noise scale measured, evaluations)."""
    root = tmp_path_factory.mktemp("ddp")
    cadence(RUN, root / "one")
    cadence(RUN, root / "two", procs=2)
    return root


def test_two_processes_match_one(reference):
    one, two = (pd.read_csv(reference / name / "metrics.csv") for name in ("one", "two"))
    assert list(one.columns) == list(two.columns) and len(one) == len(two) > 30
    for exact in ("step", "samples", "tokens", "lr", "batch"):
        assert one[exact].tolist() == two[exact].tolist()  # scheduled values and batch sizes: identical
    assert one["batch"].iloc[0] == 32 and one["batch"].iloc[-1] == 128
    for close in ("train_loss", "grad_norm", "val_loss", "noise_g2", "noise_trace"):
        a, b = one[close].to_numpy(float), two[close].to_numpy(float)
        both = ~np.isnan(a)
        assert (np.isnan(b) == ~both).all()
        rel = np.abs(a[both] - b[both]) / np.maximum(np.abs(a[both]), 1e-12)
        assert rel.max() < (1e-5 if close != "noise_g2" else 1e-3), (close, rel.max())  # G2 is a small difference
    manifest = json.loads((reference / "two" / "run.json").read_text())
    assert manifest["status"] == "complete" and manifest["segments"][0]["world"] == 2


def test_only_rank_zero_writes_and_reports(reference):
    names = sorted(p.name for p in (reference / "two").iterdir())
    assert names == ["checkpoint.pt", "metrics.csv", "run.json", "timing.csv"]


def test_a_killed_two_process_run_resumes_exactly(reference, tmp_path):
    out = tmp_path / "killed"
    died = cadence(RUN, out, procs=2, kill_at="row:17", check=False)
    assert died.returncode != 0
    assert json.loads((out / "run.json").read_text())["status"] == "running" and (out / "checkpoint.pt").exists()
    cadence(["--resume"], out, procs=2)
    assert (out / "metrics.csv").read_bytes() == (reference / "two" / "metrics.csv").read_bytes()


def test_resuming_with_another_number_of_processes_works_and_is_recorded(reference, tmp_path):
    out = tmp_path / "switched"
    cadence(RUN, out, procs=2, kill_at="row:25", check=False)
    done = cadence(["--resume"], out, procs=1)
    assert "not bit-identical" in done.stderr
    manifest = json.loads((out / "run.json").read_text())
    assert [s.get("world", 1) for s in manifest["segments"]] == [2, 1] and manifest["status"] == "complete"
    ours, ref = pd.read_csv(out / "metrics.csv"), pd.read_csv(reference / "two" / "metrics.csv")
    assert ours["batch"].tolist() == ref["batch"].tolist()
    assert np.allclose(ours["train_loss"], ref["train_loss"], rtol=1e-5)


def test_a_batch_that_does_not_divide_among_processes_is_refused(tmp_path):
    done = cadence(["digits", "--steps", "5", "--batch-size", "48", "--micro-batch", "16"], tmp_path / "bad", procs=2,
                   check=False)
    assert done.returncode != 0 and "exitcode: 2" in done.stderr  # torchrun reports its processes' status 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("cadence: error")]
    assert lines == ["cadence: error: --batch-size: the batch (48 samples) does not divide among 2 processes with "
                     "micro-batches of 16: it must be a multiple of 32"]  # said once, by rank 0
    assert not (tmp_path / "bad").exists()  # refused before the folder was made


def test_a_folder_in_use_is_said_once_and_a_default_micro_batch_does_not_block_resume(tmp_path):
    import fcntl

    out = tmp_path / "run"
    args = ["digits", "--steps", "30", "--checkpoint-every", "10"]
    died = cadence(args, out, procs=2, kill_at="row:15", check=False)  # micro-batch left to its default: 64 / 2
    assert died.returncode != 0 and json.loads((out / "run.json").read_text())["config"]["micro_batch"] == 32
    fd = os.open(out, os.O_RDONLY)  # another cadence process holds the folder
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        busy = cadence([*args, "--resume"], out, procs=2, check=False)
    finally:
        os.close(fd)
    lines = [line for line in busy.stderr.splitlines() if line.startswith("cadence: error")]
    assert len(lines) == 1 and "in use by another cadence process" in lines[0], busy.stderr[-1500:]
    assert "Connection closed" not in busy.stderr and "RuntimeError" not in busy.stderr  # rank 1 stopped quietly too
    done = cadence([*args, "--resume"], out, procs=1)  # the same command line, one process: its default would be 64
    assert "not bit-identical" in done.stderr
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_two_processes_mix_domains_as_one(tmp_path):
    """The text workload with an odm mixer and per-sample weights: each rank draws its micro-batches from the same
    (seed, index) under the same weights, the per-domain losses are all-reduced, so both mixers move alike."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_text_workload import make_corpus

    data = make_corpus(tmp_path / "corpus")
    args = ["text", "--data", str(data), "--size", "xs", "--steps", "12", "--batch-size", "16", "--micro-batch", "4",
            "--eval-every", "6", "--set", "mixture=odm()", "--set", "sample_weights=reweight(burn_in=3)"]
    cadence(args, tmp_path / "one")
    cadence(args, tmp_path / "two", procs=2)
    one, two = (pd.read_csv(tmp_path / name / "metrics.csv") for name in ("one", "two"))
    assert list(one.columns) == list(two.columns)
    for column in [c for c in one.columns if c.startswith("samples/")] + ["step", "samples"]:
        assert one[column].tolist() == two[column].tolist()  # the same samples drawn from each domain
    for column in [c for c in one.columns if c.startswith(("mixture/", "train_loss"))] + ["val_loss"]:
        a, b = one[column].to_numpy(float), two[column].to_numpy(float)
        both = ~np.isnan(a)
        assert (np.isnan(b) == ~both).all()
        assert np.abs(a[both] - b[both]).max() <= 1e-4 * np.abs(a[both]).max(), column
    assert one["mixture/code"].nunique() > 3  # the mixer acted
