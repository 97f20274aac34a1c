"""The data channels of a Plan (``mixture``, ``curriculum``, ``sample_weights``) in a loop of your own.

cadence's runner draws every batch under the plan's data channels; this module gives any
other loop (a plain PyTorch loop, a ``DataLoader`` in the transformers Trainer or Lightning)
the same drawing, signals and loss weighting, so that every client of a Plan applies them
(docs/integrations.md, "Data channels in your own loop"):

* :func:`draw_domains`: the domain of each sample of batch ``index`` and a uniform number per
  sample, from a generator seeded by ``(seed, index)``. The runner's text workload
  (:meth:`cadence.bench.text.Text.draw`) calls it: one drawing function for both clients.
* :class:`MixtureSampler`: a batch sampler over per-domain datasets. Batch ``i`` reads the
  plan's values when it is drawn: the mixture (uniform without one) picks each sample's domain,
  and a curriculum narrows the examples as the runner narrows its text: competence c keeps the
  easiest ``ceil(c n)`` of a domain's ``n`` examples (at least one), a bandit draws a difficulty
  bucket per sample (quartiles of the domain's examples sorted easiest first) from stream 2 of
  the same ``(seed, i)`` and then an example in it. A batch is a function of (seed, i, the
  plan's values at the draw): saving the number of batches drawn resumes it exactly, and
  ``state_dict(consumed=N)`` keeps the batches a DataLoader fetched ahead of training (with the
  values they were drawn under) so that a resumed sampler draws them again as they were.
* :class:`ConcatIndex`: the same batches as flat indices into a ``ConcatDataset`` of the
  domains' datasets, for ``DataLoader(batch_sampler=...)``.
* :func:`domain_signals`, :func:`bucket_signals`: per-sample losses to the ``train_loss/<d>``
  and ``bucket_loss/<k>`` signals the mixers and bandits read (the mean of the samples of that
  domain or bucket; None when the batch drew none), as the runner reports them.
* :func:`weighted_loss`: the ``sample_weights`` channel on a batch's per-sample losses, as the
  runner applies it (Sow et al. 2025; :class:`cadence.controllers.Reweight`).

This module imports nothing from ``cadence.bench``: adapters do not depend on the runner.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.utils.data

from cadence.errors import CadenceError
from cadence.plan import BUCKETS, CURRICULUM, SAMPLE_WEIGHTS, Plan
from cadence.schedules.base import _short_value

__all__ = ["generator", "draw_domains", "mixture_weights", "Batch", "MixtureSampler", "ConcatIndex",
           "domain_signals", "bucket_signals", "weighted_loss"]

_FORMAT = "cadence.torch.MixtureSampler/1"
_HISTORY = 64  # batches drawn ahead of training that state_dict(consumed=...) can give back
_BUCKET_STREAM = 2  # the stream a bandit curriculum draws buckets from (the runner's text workload uses 2 too)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def generator(seed: int, index: int, stream: int = 0) -> torch.Generator:
    """A CPU generator whose state depends only on (seed, index, stream): the recipe of
    ``cadence.bench.workloads.step_generator``, kept here so that adapters need not import the bench."""
    digest = hashlib.blake2b(f"{seed}/{index}/{stream}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))


def draw_domains(weights: torch.Tensor, seed: int, index: int, size: int) -> "tuple[torch.Tensor, torch.Tensor]":
    """(domain of each of ``size`` samples, a float64 uniform in [0, 1) per sample) of batch ``index``.

    ``weights``: one weight >= 0 per domain (float64, normalised: :func:`mixture_weights`). Both
    come from one generator seeded by (seed, index), in this order: ``torch.multinomial(weights,
    size, replacement=True)`` then ``torch.rand(size, dtype=float64)``.
    """
    g = generator(seed, index)
    domains = torch.multinomial(weights, size, replacement=True, generator=g)
    return domains, torch.rand(size, generator=g, dtype=torch.float64)


def mixture_weights(plan: Plan) -> torch.Tensor:
    """The sampling weight of each of ``plan.domains`` for the step about to run, float64 and divided by
    their sum: the plan's ``mixture`` channel, uniform without one (the runner's weights, bit for bit)."""
    names = plan.domains
    if names is None:
        raise CadenceError("the plan has no domains: build it with Plan(..., domains=[...])", field="domains")
    mixture = plan.mixture()
    if mixture is None:
        return torch.full((len(names),), 1.0 / len(names), dtype=torch.float64)
    w = torch.tensor([float(mixture[d]) for d in names], dtype=torch.float64)
    total = w.sum()
    if not (torch.isfinite(w).all() and (w >= 0).all() and total > 0):
        raise CadenceError(f"mixture weights must be finite numbers >= 0, not all zero; got {w.tolist()}",
                           field="mixture")
    return w / total


class Batch(list):
    """One drawn batch: a list of ``(domain, example index)`` pairs, with

    * ``index``: the batch's number (0 for the first drawn);
    * ``domains``: a LongTensor, the position in ``plan.domains`` of each sample's domain;
    * ``buckets``: a LongTensor, each sample's difficulty bucket under a bandit curriculum, else None.
    """

    def __init__(self, pairs, index: int, domains: torch.Tensor, buckets: "torch.Tensor | None") -> None:
        super().__init__(pairs)
        self.index, self.domains, self.buckets = index, domains, buckets


class MixtureSampler:
    """Batches over per-domain datasets, drawn under a plan's data channels.

    Args:
        plan: a :class:`cadence.Plan` built with ``domains=[...]``; read at every draw.
        sizes: ``{domain: number of examples}``, one entry per domain of the plan.
        batch_size: samples per batch.
        seed: the seed of every draw.
        scores: ``{domain: difficulty of each example}`` (lower is easier; ties by index), needed
            when the plan has a ``curriculum`` channel, refused without one.

    Each :meth:`draw` (each step of iteration, which never ends: give the loop its number of
    steps) is batch ``drawn`` under the plan as it is then: draw a step's batch after the plan's
    values for that step are known and before ``plan.advance()`` (or ``Scheduler.step()``).
    """

    def __init__(self, plan: Plan, sizes: Mapping[str, int], batch_size: int, seed: int = 0, *,
                 scores: "Mapping[str, Sequence[float]] | None" = None) -> None:
        if not isinstance(plan, Plan):
            raise CadenceError(f"MixtureSampler needs a cadence.Plan; got {type(plan).__name__}", field="plan")
        if plan.domains is None:
            raise CadenceError("MixtureSampler: the plan has no domains: build it with Plan(..., domains=[...])",
                               field="domains")
        names = plan.domains
        if not isinstance(sizes, Mapping) or set(sizes) != set(names):
            keys = list(sizes) if isinstance(sizes, Mapping) else _short_value(sizes)
            raise CadenceError(f"MixtureSampler: sizes must give the number of examples of each of the plan's "
                               f"domains ({', '.join(names)}); got {keys}", field="sizes")
        for d in names:
            if not _is_int(sizes[d]) or sizes[d] < 1:
                raise CadenceError(f"MixtureSampler: domain {d!r} must have a whole number of examples >= 1; got "
                                   f"{_short_value(sizes[d])}", field="sizes")
        if not _is_int(batch_size) or batch_size < 1:
            raise CadenceError(f"MixtureSampler: batch_size must be a whole number >= 1; got "
                               f"{_short_value(batch_size)}", field="batch_size")
        if not _is_int(seed):
            raise CadenceError(f"MixtureSampler: seed must be an int; got {_short_value(seed)}", field="seed")
        self.plan, self.names = plan, names
        self.sizes = {d: int(sizes[d]) for d in names}
        self.batch_size, self.seed = int(batch_size), int(seed)
        curriculum = plan.schedules.get(CURRICULUM)
        self.buckets = tuple(curriculum.keys) if getattr(curriculum, "vector", False) else None
        self.order = self._order(scores, curriculum is not None)
        self._lengths = torch.tensor([self.sizes[d] for d in names], dtype=torch.long)
        self.drawn = 0  # batches drawn so far: the index of the next one
        self.samples = {d: 0 for d in names}  # samples drawn from each domain so far
        self._history: list = []  # (index, counts, weights, curriculum value) of the last _HISTORY batches drawn
        self._replay: list = []  # (index, weights, curriculum value) of batches a loaded state had fetched ahead

    def _order(self, scores, needed: bool) -> "list[torch.Tensor] | None":
        """Each domain's example indices sorted easiest first (ties by index), or None without a curriculum."""
        if not needed:
            if scores is not None:
                raise CadenceError("MixtureSampler: scores order the examples for a curriculum channel, and this plan "
                                   "has none", field="scores")
            return None
        if not isinstance(scores, Mapping) or set(scores) != set(self.names):
            raise CadenceError(f"MixtureSampler: the plan's curriculum needs scores, the difficulty of every example "
                               f"of each domain ({', '.join(self.names)}), lower is easier", field="scores")
        order = []
        for d in self.names:
            try:
                s = np.asarray(scores[d], dtype=np.float64)
            except (TypeError, ValueError):
                s = None
            if s is None or s.shape != (self.sizes[d],) or not np.isfinite(s).all():
                raise CadenceError(f"MixtureSampler: scores of domain {d!r} must be {self.sizes[d]} finite numbers "
                                   "(one per example)", field="scores")
            if self.buckets is not None and self.sizes[d] < len(self.buckets):
                raise CadenceError(f"MixtureSampler: a bandit curriculum needs at least {len(self.buckets)} examples "
                                   f"per domain (one per difficulty bucket); {d!r} has {self.sizes[d]}",
                                   field="sizes")
            order.append(torch.from_numpy(np.argsort(s, kind="stable")).long())
        return order

    # -- drawing --------------------------------------------------------------------------------
    def draw(self) -> Batch:
        """The next batch, under the plan's values now (or, for a batch a resumed state holds as fetched
        ahead, under the values it was first drawn with)."""
        i = self.drawn
        if self._replay and self._replay[0][0] == i:
            _, weights, how = self._replay.pop(0)
        else:
            self._replay = []
            weights, how = mixture_weights(self.plan).tolist(), self._curriculum_now()
        batch, counts = self._draw(i, weights, how)
        self._history.append((i, counts, weights, how))
        del self._history[:-_HISTORY]
        self.samples = {d: self.samples[d] + m for d, m in zip(self.names, counts)}
        self.drawn = i + 1
        return batch

    def _curriculum_now(self):
        """The curriculum's value now: None without one, the competence, or a weight per bucket (a list)."""
        if self.order is None:
            return None
        values = self.plan.values()
        if self.buckets is not None:
            return [values[f"{CURRICULUM}/{k}"] for k in self.buckets]
        return float(values[CURRICULUM])

    def _draw(self, i: int, weights: list, how) -> "tuple[Batch, list[int]]":
        """Batch ``i`` under the mixture ``weights`` and the curriculum value ``how``; and its count per domain."""
        size = self.batch_size
        domains, u = draw_domains(torch.tensor(weights, dtype=torch.float64), self.seed, i, size)
        n = self._lengths[domains]
        buckets = None
        if how is None:
            examples = (u * n).long()
        elif self.buckets is not None:  # a bandit: a bucket per sample, then an example in it
            g = generator(self.seed, i, _BUCKET_STREAM)
            buckets = torch.multinomial(torch.tensor(how, dtype=torch.float64), size, replacement=True, generator=g)
            k = len(self.buckets)
            lo, hi = (n * buckets) // k, (n * (buckets + 1)) // k
            examples = self._sorted(domains, lo + (u * (hi - lo)).long())
        else:  # competence c: the easiest ceil(c n) examples of each domain, at least one
            c = min(max(how, 0.0), 1.0)
            room = torch.ceil(n.double() * c).long().clamp(min=1).minimum(n)
            examples = self._sorted(domains, (u * room).long())
        counts = torch.bincount(domains, minlength=len(self.names)).tolist()
        names = self.names
        return Batch([(names[d], e) for d, e in zip(domains.tolist(), examples.tolist())], i, domains, buckets), counts

    def _sorted(self, domains: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
        """The example at each rank (easiest first) of each sample's domain."""
        out = torch.empty_like(ranks)
        for k, order in enumerate(self.order):
            mine = domains == k
            out[mine] = order[ranks[mine]]
        return out

    def __iter__(self):
        while True:
            yield self.draw()

    def bucket_of(self, domain: str, index: int) -> "int | None":
        """The difficulty bucket of example ``index`` of ``domain`` under a bandit curriculum (None without
        one): what a sample drawn from bucket b always is, so a loop fed by a DataLoader can find it."""
        if domain not in self.sizes or not _is_int(index) or not 0 <= index < self.sizes[domain]:
            raise CadenceError(f"MixtureSampler.bucket_of: no example {_short_value(index)} in domain "
                               f"{_short_value(domain)}", field="index")
        if self.buckets is None:
            return None
        k, n = self.names.index(domain), self.sizes[domain]
        rank = int(torch.nonzero(self.order[k] == index)[0, 0])
        return max(b for b in range(len(self.buckets)) if (n * b) // len(self.buckets) <= rank)

    # -- checkpoints ----------------------------------------------------------------------------
    def _fingerprint(self) -> "str | None":
        if self.order is None:
            return None
        h = hashlib.sha256()
        for order in self.order:
            h.update(order.numpy().tobytes())
        return h.hexdigest()[:16]

    def state_dict(self, consumed: "int | None" = None) -> dict[str, Any]:
        """Plain JSON-safe data: the batches drawn and the samples per domain, with what they were drawn from.

        ``consumed``: the number of batches the loop has trained on, when a DataLoader fetched some
        ahead (Lightning fetches one): the state is then the sampler's after batch ``consumed``, and
        the batches fetched ahead are kept with the values they were drawn under, so that a resumed
        sampler draws them again as they were (at most 64 ahead)."""
        pending, samples = [], dict(self.samples)
        if consumed is not None:
            ahead = self.drawn - consumed if _is_int(consumed) else -1
            if not 0 <= ahead <= min(len(self._history), _HISTORY):
                raise CadenceError(f"MixtureSampler.state_dict: consumed must be a number of batches from "
                                   f"{self.drawn - len(self._history)} to {self.drawn} (drawn so far); got "
                                   f"{_short_value(consumed)}", field="consumed")
            for i, counts, weights, how in self._history[len(self._history) - ahead:]:
                samples = {d: samples[d] - m for d, m in zip(self.names, counts)}
                pending.append([i, list(weights), how])
        pending = [*pending, *(list(r) for r in self._replay)]
        return {"format": _FORMAT, "drawn": self.drawn if consumed is None else int(consumed), "samples": samples,
                "pending": pending, "seed": self.seed, "batch_size": self.batch_size, "sizes": dict(self.sizes),
                "order": self._fingerprint()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next batch is the one an uninterrupted sampler draws next (with
        the plan restored to the same point). Refuses, changing nothing, a state of another sampler."""
        if not isinstance(state, Mapping) or state.get("format") != _FORMAT:
            raise CadenceError(f"expected a {_FORMAT} state", field="state")
        mine = self.state_dict()
        for key in ("seed", "batch_size", "sizes", "order"):
            if state.get(key) != mine[key]:
                what = "difficulty order" if key == "order" else key
                raise CadenceError(f"the sampler state was drawn with another {what} ({_short_value(state.get(key))}; "
                                   f"here {_short_value(mine[key])})", field="state")
        drawn, samples, pending = state.get("drawn"), state.get("samples"), state.get("pending", [])
        if not (_is_int(drawn) and drawn >= 0 and isinstance(samples, Mapping) and set(samples) == set(self.names)
                and all(_is_int(v) and v >= 0 for v in samples.values())):
            raise CadenceError("the sampler state needs drawn (batches, >= 0) and samples (a count per domain)",
                               field="state")
        if not (isinstance(pending, list) and len(pending) <= _HISTORY and all(
                isinstance(r, list) and len(r) == 3 and r[0] == drawn + k and self._valid_record(r[1], r[2])
                for k, r in enumerate(pending))):
            raise CadenceError("the sampler state's pending batches must be [index, weights, curriculum] records "
                               "from drawn on", field="state")
        self.drawn, self.samples = int(drawn), {d: int(samples[d]) for d in self.names}
        self._replay = [(int(i), [float(x) for x in w], how) for i, w, how in pending]
        self._history = []

    def _valid_record(self, weights, how) -> bool:
        ok = isinstance(weights, list) and len(weights) == len(self.names) and all(
            isinstance(x, (int, float)) and math.isfinite(x) and x >= 0 for x in weights) and sum(weights) > 0
        if self.order is None:
            return ok and how is None
        if self.buckets is not None:
            return ok and isinstance(how, list) and len(how) == len(self.buckets) and all(
                isinstance(x, (int, float)) and math.isfinite(x) and x >= 0 for x in how) and sum(how) > 0
        return ok and isinstance(how, (int, float)) and math.isfinite(how)


class ConcatIndex:
    """A sampler's batches as flat indices into ``ConcatDataset([datasets[d] for d in plan.domains])``:
    pass it as ``DataLoader(dataset, batch_sampler=ConcatIndex(sampler))``.

    Example ``i`` of the ``k``-th domain is flat index ``offsets[k] + i``. Iterating draws from the
    sampler (its state is the sampler's) and never ends: give the loop its number of steps.
    """

    def __init__(self, sampler: MixtureSampler) -> None:
        if not isinstance(sampler, MixtureSampler):
            raise CadenceError(f"ConcatIndex needs a MixtureSampler; got {type(sampler).__name__}", field="sampler")
        self.sampler = sampler
        sizes = [sampler.sizes[d] for d in sampler.names]
        self.offsets = {d: int(o) for d, o in zip(sampler.names, np.cumsum([0, *sizes[:-1]]))}

    def flat(self, domain: str, index: int) -> int:
        """The flat index of example ``index`` of ``domain``."""
        if domain not in self.offsets or not _is_int(index) or not 0 <= index < self.sampler.sizes[domain]:
            raise CadenceError(f"ConcatIndex: no example {_short_value(index)} in domain {_short_value(domain)}",
                               field="index")
        return self.offsets[domain] + int(index)

    def dataset(self, datasets: Mapping[str, Any]) -> torch.utils.data.ConcatDataset:
        """``ConcatDataset`` of ``datasets`` (``{domain: dataset}``) in the plan's domain order, checked
        against the sampler's sizes."""
        names = self.sampler.names
        if not isinstance(datasets, Mapping) or set(datasets) != set(names):
            raise CadenceError(f"ConcatIndex.dataset: give one dataset per domain ({', '.join(names)})",
                               field="datasets")
        for d in names:
            if len(datasets[d]) != self.sampler.sizes[d]:
                raise CadenceError(f"ConcatIndex.dataset: domain {d!r} has {len(datasets[d])} examples; the sampler "
                                   f"was given {self.sampler.sizes[d]}", field="datasets")
        return torch.utils.data.ConcatDataset([datasets[d] for d in names])

    def __iter__(self):
        offsets = self.offsets
        for batch in self.sampler:
            yield [offsets[d] + i for d, i in batch]


def _per_key(losses, keys, count: int, what: str) -> "tuple[torch.Tensor, torch.Tensor]":
    if not isinstance(losses, torch.Tensor) or losses.ndim != 1:
        raise CadenceError(f"{what}: losses must be a 1-D tensor, one loss per sample", field="losses")
    keys = torch.as_tensor(keys)
    if keys.shape != losses.shape or keys.dtype in (torch.bool, torch.float16, torch.float32, torch.float64):
        raise CadenceError(f"{what}: give one whole-number key per loss ({losses.numel()} losses)", field="keys")
    keys = keys.detach().cpu().long()
    if keys.numel() and (keys.min() < 0 or keys.max() >= count):
        raise CadenceError(f"{what}: keys must lie in 0 .. {count - 1}", field="keys")
    seen = losses.detach().cpu().double()
    return (torch.bincount(keys, weights=seen, minlength=count), torch.bincount(keys, minlength=count))


def domain_signals(losses: torch.Tensor, domains, names: Sequence[str]) -> "dict[str, float | None]":
    """``{'train_loss/<d>': mean loss of the batch's samples from domain d, or None when it drew none}``.

    ``losses``: one loss per sample; ``domains``: each sample's position in ``names``
    (``plan.domains``; :attr:`Batch.domains`). With gradient accumulation, concatenate the
    step's micro-batches first: the runner's signal is the mean over the whole step."""
    sums, counts = _per_key(losses, domains, len(names), "domain_signals")
    return {f"train_loss/{d}": (s / n if n else None) for d, s, n in zip(names, sums.tolist(), counts.tolist())}


def bucket_signals(losses: torch.Tensor, buckets, keys: Sequence[str] = tuple(str(k) for k in range(BUCKETS))
                   ) -> "dict[str, float | None]":
    """``{'bucket_loss/<k>': mean loss of the batch's samples from difficulty bucket k, or None}``: what a
    bandit curriculum (``sec()``, ``dump()``) reads. ``buckets``: :attr:`Batch.buckets`."""
    sums, counts = _per_key(losses, buckets, len(keys), "bucket_signals")
    return {f"bucket_loss/{k}": (s / n if n else None) for k, s, n in zip(keys, sums.tolist(), counts.tolist())}


def weighted_loss(plan: Plan, losses: torch.Tensor) -> torch.Tensor:
    """The objective of a batch with per-sample ``losses`` under the plan's ``sample_weights`` channel.

    As the runner: with strength s (the channel's value now) > 0, ``mean(w * losses)`` where
    ``w = plan.schedules['sample_weights'].weights(losses, s)`` (mean 1 over the batch); the plain
    mean when the plan has no such channel or s is 0. Gradients flow through ``losses`` only.
    Report the plain mean as ``train_loss``: only the gradient sees the weights.
    """
    if not isinstance(losses, torch.Tensor) or losses.ndim != 1:
        raise CadenceError("weighted_loss: losses must be a 1-D tensor, one loss per sample", field="losses")
    reweight = plan.schedules.get(SAMPLE_WEIGHTS)
    if reweight is None:
        return losses.mean()
    strength = plan.values()[SAMPLE_WEIGHTS]
    if not strength > 0:
        return losses.mean()
    w = reweight.weights(losses.detach().cpu().double().numpy(), strength)
    return (torch.as_tensor(w, dtype=losses.dtype, device=losses.device) * losses).mean()


#: signals a training step measures per domain or bucket: an integration's ``PlanCallback.report``
#: takes them from the user's loss code, as the runner computes them itself
REPORTED_PREFIXES = ("train_loss/", "bucket_loss/", "probe_loss/")


def reported(name: str) -> bool:
    """Whether a signal is one a training step reports itself (``train_loss/<domain>``, ...)."""
    return isinstance(name, str) and name.startswith(REPORTED_PREFIXES)


class Reports:
    """What a training step reported through ``PlanCallback.report``, until the plan observes it: each
    signal's mean over the step's micro-batches (None: not measured this step)."""

    def __init__(self) -> None:
        self._sums: dict[str, list[float]] = {}

    def add(self, signals: Mapping[str, Any]) -> None:
        from cadence.errors import PlanError

        if not isinstance(signals, Mapping):
            raise PlanError(f"report: signals must be a mapping of names to numbers; got {type(signals).__name__}",
                            field="signals")
        for name, value in signals.items():
            if not reported(name):
                raise PlanError(f"report: {str(name)[:60]!r} is not a signal a training step reports; names start "
                                f"with {', '.join(REPORTED_PREFIXES)}", field="signals")
            if value is None:
                self._sums.setdefault(name, [0.0, 0])
                continue
            if isinstance(value, torch.Tensor):
                value = float(value.detach())
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise PlanError(f"report: signal {name!r} must be a number or None; got {type(value).__name__}",
                                field="signals")
            total = self._sums.setdefault(name, [0.0, 0])
            if math.isfinite(float(value)):
                total[0] += float(value)
                total[1] += 1

    def take(self) -> dict[str, "float | None"]:
        """The step's means, and forget them."""
        out = {name: (s / n if n else None) for name, (s, n) in self._sums.items()}
        self._sums = {}
        return out

