"""Curricula and per-sample weights through the Plan and the runner: what is drawn, resume, bad input."""

import json

import numpy as np
import pytest
import torch

from cadence.bench import difficulty
from cadence.bench.report import load_metrics
from cadence.bench.runner import RunConfig, _order_of, resolve, train
from cadence.bench.text import Text
from cadence.cli import main
from cadence.errors import CadenceError


def graded_corpus(root):
    """Two domains whose files are made of one letter each: which letter a window holds says which file it came
    from. Scores (scores.csv): 'a' files easiest, then 'b', 'c', 'd'."""
    rows = ["path,score"]
    for domain in ("left", "right"):
        for k, letter in enumerate("abcd"):
            for copy in range(3):
                folder = root / domain
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{letter}{copy}.txt").write_text(letter * 2000)
                rows.append(f"{domain}/{letter}{copy}.txt,{k}")
    (root.parent / "scores.csv").write_text("\n".join(rows) + "\n")
    return root


def cfg(root, channels, **kw):
    base = dict(workload="text", data=str(root), size="xs", horizon=8, batch_size=16, eval_every=4, checkpoint_every=3,
                difficulty=f"column={root.parent / 'scores.csv'}:score")
    base.update(kw)
    return RunConfig(channels={"lr": "constant(1e-3)", **channels}, **base)


def letters(x):
    return {chr(int(b)) for b in torch.unique(x)}


def test_a_pace_curriculum_draws_from_the_easiest_fraction_and_a_bandit_from_its_buckets(tmp_path):
    root = graded_corpus(tmp_path / "corpus")
    c, plan = resolve(cfg(root, {"curriculum": "pace(shape='linear', start=0.01, full='50%')"}))
    w = Text(data_dir=str(root))
    order = _order_of(w, c.difficulty)
    x, _, domains = w.batch(0, 0, 64, None, (order, 0.01))  # the first 1% of each domain: its easiest file
    assert letters(x) == {"a"} and set(domains.tolist()) == {0, 1}
    x, _, _ = w.batch(0, 0, 256, None, (order, 1.0))
    assert letters(x) == set("abcd")  # all of it
    x, _, _, buckets = w.batch(0, 1, 64, None, (order, torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)))
    assert letters(x) == {"d"} and set(buckets.tolist()) == {3}  # the hardest quartile only
    ranks = []  # where windows start: quartiles of each domain's text sorted easiest first
    for k in range(4):
        onehot = torch.zeros(4, dtype=torch.float64)
        onehot[k] = 1.0
        x, _, _, _ = w.batch(0, 2, 256, None, (order, onehot))
        ranks.append(float((x[:, 0] - ord("a")).double().mean()))
    assert ranks == sorted(ranks) and ranks[0] < 1.0 < 2.0 < ranks[3]
    assert c.difficulty["by"] == "column" and len(c.difficulty["hash"]) == 16


def test_curriculum_runs_log_their_values_and_resume_exactly(tmp_path):
    root = graded_corpus(tmp_path / "corpus")
    for name, channels in (("pace", {"curriculum": "pace(shape='root', start=0.1, full='50%')"}),
                           ("sec", {"curriculum": "sec()"}), ("dump", {"curriculum": "dump()"})):
        config = cfg(root, channels)
        train(config, tmp_path / name, threads=1)
        train(config, tmp_path / f"{name}-2", threads=1, stop_after=4)
        train(config, tmp_path / f"{name}-2", threads=1, resume=True)
        assert (tmp_path / name / "metrics.csv").read_bytes() == (tmp_path / f"{name}-2" / "metrics.csv").read_bytes()
        m = load_metrics(tmp_path / name / "metrics.csv")
        if name == "pace":
            assert m["curriculum"][0] == pytest.approx(0.1) and m["curriculum"][-1] == 1.0
        else:
            probabilities = np.stack([m[f"curriculum/{k}"] for k in range(4)])
            assert np.allclose(probabilities.sum(axis=0), 1.0)
            assert np.isfinite(np.stack([m[f"bucket_loss/{k}"] for k in range(4)])).any(axis=1).all()
    saved = json.loads((tmp_path / "sec" / "run.json").read_text())["config"]["difficulty"]
    (tmp_path / "scores.csv").write_text((tmp_path / "scores.csv").read_text().replace(",3\n", ",2.5\n"))
    with pytest.raises(CadenceError, match="changed since the run started"):
        difficulty.resolve(saved, Text(data_dir=str(root)))


def test_a_reference_runs_loss_orders_the_files(tmp_path):
    root = graded_corpus(tmp_path / "corpus")
    (root / "left" / "a0.txt").write_text("xyzzy plugh " * 200)  # not one letter: harder for any model
    train(RunConfig(workload="text", data=str(root), size="xs", horizon=30, batch_size=16,
                    channels={"lr": "constant(3e-3)"}), tmp_path / "ref", threads=1)
    w = Text(data_dir=str(root))
    found = difficulty.scores(w, difficulty.parse(f"reference={tmp_path / 'ref'}"))
    assert set(found) == {rel for files in w.pieces().values() for rel, _ in files}
    assert max(found, key=found.get) == "left/a0.txt"


def test_sample_weights_change_the_objective_not_the_reported_loss(tmp_path):
    base = dict(workload="tiny-lm", size="xs", horizon=6, batch_size=16, eval_every=6)
    train(RunConfig(channels={"lr": "constant(3e-3)"}, **base), tmp_path / "none", threads=1)
    train(RunConfig(channels={"lr": "constant(3e-3)", "sample_weights": "reweight(burn_in=5)"}, **base),
          tmp_path / "off", threads=1)
    train(RunConfig(channels={"lr": "constant(3e-3)", "sample_weights": "reweight(strategy='extremes', burn_in=0)"},
                    **base), tmp_path / "on", threads=1)
    none, off, on = (load_metrics(tmp_path / n / "metrics.csv") for n in ("none", "off", "on"))
    # strength 0 in the burn-in: the same objective (a mean of per-sample means: equal up to rounding)
    assert off["train_loss"].tolist() == pytest.approx(none["train_loss"].tolist(), rel=1e-5, abs=0)
    assert off["sample_weights"].tolist() == [0.0] * 5 + [1.0] and on["sample_weights"].tolist() == [1.0] * 6
    assert on["train_loss"][0] == none["train_loss"][0]  # the first step's loss is measured before any update
    # then the weighted objective moves the model elsewhere: far more than rounding
    assert abs(on["train_loss"][-1] - none["train_loss"][-1]) > 100 * abs(off["train_loss"][-1] - none["train_loss"][-1])


def test_bad_curriculum_settings_are_one_line_before_anything_is_written(tmp_path, capsys):
    root = graded_corpus(tmp_path / "corpus")
    (tmp_path / "partial.csv").write_text("path,score\nleft/a0.txt,1\n")
    cases = [
        (["--set", "curriculum=sec()"], "needs the difficulty of each training file"),
        (["--difficulty", "length"], "this plan has none"),
        (["--difficulty", "weird", "--set", "curriculum=sec()"], "difficulty must be 'length'"),
        (["--difficulty", f"column={tmp_path / 'scores.csv'}:hardness", "--set", "curriculum=sec()"],
         "has no column 'hardness'; its columns: path, score"),
        (["--difficulty", f"column={tmp_path / 'partial.csv'}:score", "--set", "curriculum=sec()"],
         "gives no score for 21 of the 22 training files"),
        (["--set", "curriculum=plateau(cosine(peak=1))", "--difficulty", "length"], "takes pace(...)"),
        (["--set", "sample_weights=cosine(peak=1)"], "takes reweight(strategy=...)"),
        (["--set", "sample_weights=reweight(strategy='median')"], "strategy"),
    ]
    for argv, message in cases:
        code = main(["run", "text", "--data", str(root), *argv, "--steps", "2", "--size", "xs",
                     "--out", str(tmp_path / "out"), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, (argv, err)
        assert not (tmp_path / "out").exists()
    code = main(["run", "digits", "--set", "curriculum=pace()", "--difficulty", "length", "--steps", "2",
                 "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 2 and "cannot order its data by difficulty" in capsys.readouterr().err
