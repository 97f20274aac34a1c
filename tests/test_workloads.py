import numpy as np
import pytest
import torch

from cadence.bench.workloads import WORKLOADS, get_workload, parameter_count
from cadence.errors import CadenceError


@pytest.mark.parametrize("name, size, steps, lr", [
    ("tiny-lm", "xs", 40, 3e-3), ("digits", "small", 60, 3e-3), ("digits-cnn", "small", 60, 3e-3), ("logreg", "small", 60, 0.05),
])
def test_each_workload_learns(name, size, steps, lr):
    w = get_workload(name)
    torch.manual_seed(0)
    model = w.model(size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    before = w.evaluate(model)["val_loss"]
    for step in range(steps):
        loss = w.loss(model, w.batch(0, step, w.batch_size))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = w.evaluate(model)["val_loss"]
    assert after < before * 0.85, (before, after)


def test_batches_are_a_pure_function_of_seed_and_step():
    w = get_workload("tiny-lm")
    a, b = w.batch(3, 17, 8), WORKLOADS["tiny-lm"]().batch(3, 17, 8)  # a fresh instance
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(w.batch(3, 18, 8)[0], a[0]) and not torch.equal(w.batch(4, 17, 8)[0], a[0])
    x, y = a
    assert x.shape == (8, 128) and torch.equal(x[:, 1:], y[:, :-1])  # next-byte targets


def test_tabular_epochs_sample_without_replacement():
    w = get_workload("digits")
    per_epoch = int(w.rates(64).steps_per_epoch)
    x_all = w._arrays()[0]
    seen = torch.cat([w.batch(0, s, 64)[0] for s in range(per_epoch)])
    # every row of an epoch is a distinct training example (the training set has no duplicate rows)
    assert len(torch.unique(x_all, dim=0)) == len(x_all)
    assert len(torch.unique(seen, dim=0)) == per_epoch * 64
    assert not torch.equal(w.batch(0, 0, 64)[0], w.batch(0, per_epoch, 64)[0])  # the next epoch reshuffles


def test_batch_size_limits():
    assert get_workload("tiny-lm").max_batch_size == 1024
    with pytest.raises(CadenceError, match="larger than the training set") as e:
        get_workload("digits").rates(5000)
    assert e.value.field == "batch_size"


def test_rates_feed_the_time_model():
    lm = get_workload("tiny-lm").rates(32)
    assert lm.tokens_per_step == 32 * 128 and lm.steps_per_epoch > 1000
    d = get_workload("digits").rates(64)
    assert d.samples_per_step == 64 and d.steps_per_epoch == 1438 // 64


def test_tiny_lm_split_is_by_path_and_stable():
    w = get_workload("tiny-lm")
    train, val = w._corpus()
    assert len(val) > 100_000 and len(train) > 20 * len(val)
    assert w.fingerprint() == WORKLOADS["tiny-lm"]().fingerprint()  # a fresh instance reads the same
    assert 700_000 < parameter_count(w.model("small")) < 1_300_000  # "about 1M parameters"


def test_unknown_names():
    with pytest.raises(CadenceError, match="unknown workload 'mnist'; available: tiny-lm"):
        get_workload("mnist")
    with pytest.raises(CadenceError, match="unknown size .huge.; allowed: small, medium") as e:
        get_workload("digits").model("huge")
    assert e.value.field == "size"
    with pytest.raises(CadenceError, match="unknown size"):
        get_workload("digits").check_size(["small"])  # not a name at all: still one clear error
    with pytest.raises(CadenceError, match="unknown workload"):
        get_workload(["digits"])
    assert set(WORKLOADS) == {"tiny-lm", "text", "digits", "digits-cnn", "logreg"}
