"""cadence.torch.data: the data channels (mixture, curriculum, sample_weights) in a loop of your own."""

import json
import math

import numpy as np
import pytest
import torch

from cadence import Plan
from cadence.bench import workloads
from cadence.bench.text import Text
from cadence.errors import CadenceError
from cadence.torch import Scheduler
from cadence.torch.data import (ConcatIndex, MixtureSampler, bucket_signals, domain_signals, draw_domains, generator,
                                mixture_weights, weighted_loss)

DOMAINS = ("code", "prose", "web")
SIZES = {"code": 50, "prose": 30, "web": 20}


def plan(mixture=None, horizon=100, **channels):
    if mixture is not None:
        channels["mixture"] = mixture
    return Plan({"lr": "cosine(peak=1e-3)", **channels}, horizon=horizon, domains=DOMAINS)


def old_draw(self, seed, i, size, weights=None):
    """Text.draw as it was before it called draw_domains (copied from the release before)."""
    g = workloads.step_generator(seed, i)
    w = self.weights() if weights is None else weights
    domains = torch.multinomial(w, size, replacement=True, generator=g)
    return domains, torch.rand(size, generator=g, dtype=torch.float64)


def test_the_generator_is_the_bench_recipe_and_text_draw_is_unchanged_bit_for_bit():
    for seed, index, stream in [(0, 0, 0), (7, 12345, 0), (3, 9, 2), (2**40, 2**33, 1)]:
        a, b = generator(seed, index, stream), workloads.step_generator(seed, index, stream)
        assert torch.equal(a.get_state(), b.get_state())
    text = Text()
    for weights in (torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64),
                    torch.tensor([0.0, 0.9, 0.1], dtype=torch.float64),
                    torch.tensor([1 / 3, 1 / 3, 1 / 3], dtype=torch.float64)):
        for seed, i, size in [(0, 0, 32), (5, 77, 7), (123, 10**6, 64)]:
            new, old = text.draw(seed, i, size, weights), old_draw(text, seed, i, size, weights)
            assert torch.equal(new[0], old[0]) and torch.equal(new[1], old[1])
            assert new[1].dtype == torch.float64
            mine = draw_domains(weights, seed, i, size)
            assert torch.equal(mine[0], old[0]) and torch.equal(mine[1], old[1])


def test_a_static_mixture_is_followed_and_a_zero_weight_never_drawn():
    p = plan({"code": 3, "prose": 1, "web": 0})
    sampler = MixtureSampler(p, SIZES, batch_size=64, seed=1)
    counts = {d: 0 for d in DOMAINS}
    for _ in range(200):
        batch = sampler.draw()
        assert len(batch) == 64
        for d, i in batch:
            assert 0 <= i < SIZES[d]
            counts[d] += 1
        assert [DOMAINS[k] for k in batch.domains.tolist()] == [d for d, _ in batch]
    assert counts["web"] == 0
    assert counts["code"] / 12800 == pytest.approx(0.75, abs=0.015)
    assert sampler.samples == counts and sampler.drawn == 200
    # without a mixture channel: uniform over the domains
    uniform = MixtureSampler(plan(), SIZES, batch_size=60, seed=1)
    drawn = np.bincount(np.concatenate([uniform.draw().domains.numpy() for _ in range(100)]), minlength=3)
    assert np.allclose(drawn / drawn.sum(), 1 / 3, atol=0.02)
    # every example of a domain is reachable, uniformly
    seen = np.bincount([i for _ in range(100) for d, i in uniform.draw() if d == "web"], minlength=20)
    assert seen.min() > 0


def test_the_mixture_is_read_at_every_draw_as_the_clock_moves():
    # code fades out, web fades in, over 20 steps
    p = plan({"code": "linear(peak=1, final=0)", "prose": 0, "web": "linear(peak=0, final=1)"}, horizon=20)
    sampler = MixtureSampler(p, SIZES, batch_size=200, seed=0)
    share = []
    for _ in range(20):
        batch = sampler.draw()
        share.append(float((batch.domains == 0).double().mean()))
        assert torch.equal(mixture_weights(p), torch.tensor([p.mixture()[d] for d in DOMAINS], dtype=torch.float64)
                           / sum(p.mixture().values()))
        p.advance()
    assert share[0] == 1.0 and share[-1] < 0.1
    expected = [1 - k / 20 for k in range(20)]
    assert np.allclose(share, expected, atol=0.1)
    assert all(a >= b - 0.12 for a, b in zip(share, share[1:]))


def _drive(p, sampler, steps, out):
    """Draw a step's batch, observe fake per-domain losses (so an odm mixer moves), advance."""
    for _ in range(steps):
        batch = sampler.draw()
        out.append(list(batch))
        losses = torch.tensor([1.0 + 0.5 * d + 0.01 * i for d, i in zip(batch.domains.tolist(),
                                                                        [i for _, i in batch])])
        p.observe(domain_signals(losses, batch.domains, p.domains))
        p.advance()


def test_resume_draws_the_same_batches_as_an_uninterrupted_sampler():
    def fresh():
        p = plan("odm()", horizon=30)
        return p, MixtureSampler(p, SIZES, batch_size=16, seed=3)

    p, s = fresh()
    straight = []
    _drive(p, s, 15, straight)
    p, s = fresh()
    first = []
    _drive(p, s, 10, first)
    assert first == straight[:10]
    saved = json.loads(json.dumps({"plan": p.state_dict(), "sampler": s.state_dict()}))
    p2, s2 = fresh()
    p2.load_state_dict(saved["plan"])
    s2.load_state_dict(saved["sampler"])
    assert s2.drawn == 10 and s2.samples == s.samples
    rest = []
    _drive(p2, s2, 5, rest)
    assert rest == straight[10:15]
    assert len({str(b) for b in straight}) == 15  # the batches do differ from step to step
    # a state of another sampler is refused and changes nothing
    other = MixtureSampler(plan("odm()", horizon=30), SIZES, batch_size=8, seed=3)
    with pytest.raises(CadenceError, match="batch_size"):
        other.load_state_dict(saved["sampler"])
    assert other.drawn == 0


MOVING = {"code": "linear(peak=1, final=0)", "prose": 0.2, "web": "linear(peak=0, final=1)"}  # moves every step


def _drive_ahead(p, sampler, steps, out):
    """As Lightning's loop: the loader fetches the next batch before the step runs (one ahead)."""
    batches = iter(sampler)
    queue = [next(batches)]
    for _ in range(steps):
        queue.append(next(batches))
        batch = queue.pop(0)
        out.append((batch.index, list(batch)))
        losses = torch.tensor([1.0 + d for d in batch.domains.tolist()]) + 0.1 * batch.index
        p.observe(domain_signals(losses, batch.domains, p.domains))
        p.advance()


@pytest.mark.parametrize("curriculum", [None, "pace(start=0.1, full=10)", "dump()"])
def test_resume_of_a_loader_that_fetched_ahead_gives_back_the_batches_it_had_not_trained_on(curriculum):
    scores = {d: [float((7 * i) % n) for i in range(n)] for d, n in SIZES.items()} if curriculum else None

    def fresh():
        p = plan(MOVING, horizon=15, **({"curriculum": curriculum} if curriculum else {}))
        return p, MixtureSampler(p, SIZES, batch_size=16, seed=5, scores=scores)

    p, s = fresh()
    straight = []
    _drive_ahead(p, s, 15, straight)
    p, s = fresh()
    first = []
    _drive_ahead(p, s, 10, first)
    assert s.drawn == 11  # one batch fetched ahead of the 10 trained on
    saved = json.loads(json.dumps({"plan": p.state_dict(), "sampler": s.state_dict(consumed=10)}))
    assert saved["sampler"]["drawn"] == 10 and len(saved["sampler"]["pending"]) == 1
    p2, s2 = fresh()
    p2.load_state_dict(saved["plan"])
    s2.load_state_dict(saved["sampler"])
    assert sum(s2.samples.values()) == 10 * 16
    rest = []
    _drive_ahead(p2, s2, 5, rest)
    assert [i for i, _ in rest] == list(range(10, 15)) and rest == straight[10:15]
    # the state without consumed= would skip the batch fetched ahead
    p3, s3 = fresh()
    p3.load_state_dict(saved["plan"])
    s3.load_state_dict(json.loads(json.dumps(s.state_dict())))
    assert s3.draw().index == 11
    with pytest.raises(CadenceError, match="consumed"):
        s.state_dict(consumed=12)


def test_a_competence_curriculum_draws_only_the_easiest_examples():
    # scores: web's example i has difficulty -i (so its easiest are the highest indices); the others i
    scores = {"code": list(range(50)), "prose": [float(i % 7) for i in range(30)], "web": [-i for i in range(20)]}
    p = plan(curriculum="pace(shape='linear', start=0.2, full=10)", horizon=20)
    sampler = MixtureSampler(p, SIZES, batch_size=64, seed=0, scores=scores)
    first = [sampler.draw() for _ in range(20)]
    code = {i for b in first[:1] for d, i in b if d == "code"}
    web = {i for b in first[:1] for d, i in b if d == "web"}
    assert code and code <= set(range(10))  # c = 0.2: the easiest 10 of 50
    assert web and web <= set(range(16, 20))  # the easiest 4 of 20: the highest indices
    prose_easiest = set(np.argsort(scores["prose"], kind="stable")[:6].tolist())
    assert {i for d, i in first[0] if d == "prose"} <= prose_easiest
    # as the clock moves the competence grows: by step 10 all of it
    for _ in range(10):
        p.advance()
    later = [sampler.draw() for _ in range(20)]
    assert max(i for b in later for d, i in b if d == "code") >= 40
    with pytest.raises(CadenceError, match="scores"):
        MixtureSampler(p, SIZES, batch_size=4)
    with pytest.raises(CadenceError, match="scores"):
        MixtureSampler(plan(), SIZES, batch_size=4, scores=scores)


def test_a_bandit_curriculum_draws_within_its_buckets_and_reports_them():
    scores = {d: list(range(n)) for d, n in SIZES.items()}
    p = plan(curriculum="sec()", horizon=20)
    sampler = MixtureSampler(p, SIZES, batch_size=64, seed=0, scores=scores)
    batch = sampler.draw()
    assert batch.buckets is not None and batch.buckets.shape == (64,)
    for (d, i), b in zip(batch, batch.buckets.tolist()):
        n = SIZES[d]
        assert n * b // 4 <= i < n * (b + 1) // 4
        assert sampler.bucket_of(d, i) == b
    with pytest.raises(CadenceError, match="no example"):
        sampler.bucket_of("web", 20)
    losses = batch.buckets.double() + 1.0
    signals = bucket_signals(losses, batch.buckets)
    assert set(signals) == {f"bucket_loss/{k}" for k in range(4)}
    for k in range(4):
        if (batch.buckets == k).any():
            assert signals[f"bucket_loss/{k}"] == pytest.approx(k + 1.0)
    p.observe(signals)
    assert p.states["curriculum"] != p.schedules["curriculum"].init()


def test_concat_index_maps_batches_into_a_concat_dataset():
    p = plan({"code": 1, "prose": 1, "web": 1})
    data = {d: torch.utils.data.TensorDataset(torch.arange(n) + 1000 * k, torch.full((n,), k))
            for k, (d, n) in enumerate(SIZES.items())}
    a = MixtureSampler(p, SIZES, batch_size=8, seed=4)
    b = MixtureSampler(p, SIZES, batch_size=8, seed=4)
    index = ConcatIndex(a)
    loader = torch.utils.data.DataLoader(index.dataset(data), batch_sampler=index)
    for (values, domains), pairs in zip(loader, (b.draw() for _ in range(5))):
        assert values.tolist() == [1000 * DOMAINS.index(d) + i for d, i in pairs]
        assert domains.tolist() == pairs.domains.tolist()
        if a.drawn >= 5:
            break
    assert index.flat("web", 3) == 80 + 3
    with pytest.raises(CadenceError, match="examples"):
        index.dataset({**data, "web": torch.utils.data.TensorDataset(torch.arange(3))})


def test_domain_signals_give_none_for_a_domain_not_drawn():
    losses = torch.tensor([1.0, 3.0, 2.0], requires_grad=True)
    got = domain_signals(losses, torch.tensor([0, 0, 2]), DOMAINS)
    assert got == {"train_loss/code": 2.0, "train_loss/prose": None, "train_loss/web": 2.0}
    with pytest.raises(CadenceError, match="keys"):
        domain_signals(losses, torch.tensor([0, 3, 1]), DOMAINS)
    with pytest.raises(CadenceError, match="one whole-number key per loss"):
        domain_signals(losses, torch.tensor([0, 1]), DOMAINS)


def test_weighted_loss_is_the_runners_formula():
    torch.manual_seed(0)
    per = torch.rand(32, dtype=torch.float32) * 4
    p = plan(sample_weights="reweight(strategy='linupper', burn_in=5)", horizon=20)
    assert weighted_loss(p, per) == per.mean()  # strength 0 during the burn-in
    for _ in range(5):
        p.advance()
    strength = p.values()["sample_weights"]
    assert strength == 1.0
    # the runner (cadence.bench.runner.Loop.micro_batches), written out
    seen = per.detach().cpu().double()
    w = p.schedules["sample_weights"].weights(seen.numpy(), strength)
    runner = (torch.as_tensor(w, dtype=per.dtype, device=per.device) * per).mean()
    got = weighted_loss(p, per)
    assert torch.equal(got, runner) and not torch.equal(got, per.mean())
    assert weighted_loss(plan(), per) == per.mean()  # no channel: the mean
    x = per.clone().requires_grad_()
    weighted_loss(p, x).backward()
    assert torch.allclose(x.grad, torch.as_tensor(w, dtype=per.dtype) / 32)  # gradients through the losses only


def test_bad_input_is_named():
    with pytest.raises(CadenceError, match="no domains"):
        MixtureSampler(Plan({"lr": "cosine(peak=1e-3)"}, horizon=10), {"a": 1}, batch_size=2)
    with pytest.raises(CadenceError, match="sizes"):
        MixtureSampler(plan(), {"code": 5, "prose": 5}, batch_size=2)
    with pytest.raises(CadenceError, match="whole number of examples"):
        MixtureSampler(plan(), {"code": 5, "prose": 0, "web": 5}, batch_size=2)
    with pytest.raises(CadenceError, match="batch_size"):
        MixtureSampler(plan(), SIZES, batch_size=0)


def test_an_odm_mixture_moves_in_a_short_loop_with_a_torch_model():
    """End to end: a tiny linear model, three domains of which 'web' is pure noise (its loss stays high),
    odm() reads train_loss/<d> and moves weight to it; Scheduler drives lr and advances the plan."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    w_true = torch.randn(4, generator=gen)
    x = {d: torch.randn(n, 4, generator=gen) for d, n in SIZES.items()}
    y = {d: x[d] @ w_true for d in DOMAINS}
    y["web"] = torch.randn(SIZES["web"], generator=gen) * 3  # unlearnable
    p = Plan({"lr": "constant(0.05)", "mixture": "odm()"}, horizon=60, domains=DOMAINS)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = Scheduler(opt, p)
    sampler = MixtureSampler(p, SIZES, batch_size=32, seed=0)
    start = p.mixture()
    for _ in range(60):
        batch = sampler.draw()
        xb = torch.stack([x[d][i] for d, i in batch])
        yb = torch.stack([y[d][i] for d, i in batch])
        losses = (model(xb).squeeze(1) - yb) ** 2
        opt.zero_grad()
        weighted_loss(p, losses).backward()
        opt.step()
        sched.observe(domain_signals(losses, batch.domains, p.domains))
        sched.step()
    end = p.mixture()
    assert start == pytest.approx({d: 1 / 3 for d in DOMAINS})
    assert end["web"] > 0.37 and end["web"] > max(end["code"], end["prose"])  # odm favours the high loss
    assert math.isclose(sum(end.values()), 1.0)
    assert sampler.samples["web"] > 60 * 32 / 3  # and the sampler followed it
