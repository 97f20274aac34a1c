"""Online data-mixing controllers: the ``mixture`` channel's weights follow what the run measures.

Each is a :class:`~cadence.controllers.base.VectorController`: ``value`` is ``{domain: weight}``
(weights >= 0 summing to 1), the state is plain data, and the value at a step is a function of
(state, clock) alone. All three are written in numpy; none reads a file or a model.

* ``odm(...)``: Online Data Mixing (Albalak et al. 2023): an EXP3-style bandit over domains
  whose reward is each domain's training loss, smoothed by an exponential moving average.
  Reads ``train_loss/<d>``. Note what loss-as-reward means: a domain whose loss stays high
  (noise that cannot be learned) keeps the highest reward, so ODM leans towards it.
* ``doremi(reference_loss=[...], ...)``: DoReMi-style group reweighting (Xie et al. 2023):
  exponentiated-gradient ascent on each domain's clipped excess loss over a reference run,
  smoothed towards a prior; the running average of the weights (the paper's output) is kept
  and reported. Reads ``train_loss/<d>``.
* ``aioli(...)``: Aioli (Chen et al. 2024): in rounds, measure how training on perturbed
  mixtures lowers each domain's loss on a held-out probe, solve the linear dynamic mixing law
  for its matrix A, then ``p <- p * exp(eta * sum_i A_ij)``. Reads ``probe_loss/<d>`` and
  asks the loop for the probe every ``probe_every`` steps.

docs/mixing-controllers.md gives each one's defaults, where they come from, and how it
differs from its paper. ``MIXERS`` lists the classes (registered by the controllers package).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cadence.controllers.base import VectorController, finite
from cadence.errors import ScheduleError
from cadence.schedules.base import _short_value
from cadence.time import Unit

__all__ = ["ODM", "DoReMi", "Aioli", "MIXERS"]

_MAX_PATH = 4096


class _Mixer(VectorController):
    """What the three share: validation of whole numbers and per-domain lists, a state checker."""

    needs_total = False

    def _whole(self, what: str, value: Any, low: int) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low \
                or value > 2**53:
            raise ScheduleError(f"{self.name}: {what} must be a whole number >= {low}; got {_short_value(value)}")
        return int(value)

    def _numbers(self, what: str, value: Any, *, low: float | None = None) -> "list[float] | None":
        """A list of finite numbers (or None), each >= ``low`` when given."""
        if value is None:
            return None
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
            raise ScheduleError(f"{self.name}: {what} must be a list of numbers, one per domain in the run's order; "
                                f"got {_short_value(value)}")
        return [self._number(f"{what}[{i}]", v, low=low) for i, v in enumerate(value)]

    def _length(self, what: str, values: "list | None") -> None:
        if values is not None and len(values) != len(self.keys):
            raise ScheduleError(f"{self.name}: {what} has {len(values)} entries; the run has {len(self.keys)} domains "
                                f"({', '.join(self.keys[:8])}), one entry each in that order")

    def _signals(self, signals: dict, prefix: str) -> "list[float | None]":
        """Each domain's ``<prefix>/<domain>`` as a float, None where missing or not finite."""
        return [finite(signals.get(f"{prefix}/{k}")) for k in self.keys]

    def _dict(self, weights) -> "dict[str, float]":
        return {k: float(w) for k, w in zip(self.keys, weights)}

    def _check_vector(self, state: dict, field: str, *, weights: bool = False, nullable: bool = False) -> str | None:
        """Why ``state[field]`` is not a list of one finite number per domain (>= 0 summing to 1 for weights)."""
        v = state.get(field) if isinstance(state, dict) else None
        n = len(self.keys)
        if not isinstance(v, list) or len(v) != n:
            return f"{field} must be a list of {n} numbers, one per domain; got {_short_value(v)}"
        for x in v:
            if x is None and nullable:
                continue
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                return f"{field} must hold finite numbers; got {_short_value(x)}"
            if weights and not 0 <= x <= 1:
                return f"{field} must hold weights from 0 to 1; got {x!r}"
        if weights and abs(math.fsum(v) - 1.0) > 1e-6:
            return f"{field} must sum to 1; got {math.fsum(v)!r}"
        return None

    def _count(self, state: dict, field: str) -> str | None:
        v = state.get(field) if isinstance(state, dict) else None
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            return f"{field} must be a whole number >= 0; got {_short_value(v)}"
        return None


def _normalised(p: np.ndarray) -> list[float]:
    p = np.clip(p, 0.0, None)
    return (p / p.sum()).tolist()


# -- ODM -------------------------------------------------------------------------------------------------


class ODM(_Mixer):
    """Online Data Mixing: EXP3 with a smoothed loss reward (Albalak et al. 2023, Algorithm 1).

    For the bandit's t-th step (t = step - warmup + 1, from 1), with K domains::

        eps_t = min(1/K, sqrt(ln K / (K t)))            (eps_0 = 1/K)
        pi_i  = (1 - K eps_t) exp(eps_{t-1} R_i) / sum_j exp(eps_{t-1} R_j) + eps_t
        R_i  <- alpha R_i + (1 - alpha) reward_i      after each step, for each observed domain

    The paper samples one domain per batch and observes only its loss, so it divides the
    reward by the chosen domain's probability (the EXP3 importance weight). Here a batch
    mixes domains and the loop reports ``train_loss/<d>`` for every domain the batch drew
    from: the bandit has full information, so by default (``importance='none'``) the reward
    is the loss itself, unweighted, and a domain the step did not draw from keeps its R. An
    importance weight would be biased here (a domain of weight 0.1 is almost surely in a
    batch of 32, yet its reward would be multiplied by 10); ``importance='weight'`` divides
    by the weight anyway, the paper's estimator, for comparison.

    Loss as reward favours the domain whose loss is highest. When that loss is high because
    the domain cannot be learned (noise), ODM gives it more weight, not less: a property of
    the method, not of this implementation (tests/test_mixing_controllers.py shows it). As t
    grows, eps_{t-1} R shrinks and the weights drift back towards uniform.
    """

    name = "odm"
    formula = ("pi_i = (1 - K eps_t) softmax(eps_{t-1} R)_i + eps_t, eps_t = min(1/K, sqrt(ln K/(K t))); "
               "R_i <- alpha R_i + (1 - alpha) train_loss_i")
    source = "Albalak, Pan, Raffel, Wang 2023, Efficient Online Data Mixing For Language Model Pre-Training (arXiv 2312.02406)"

    def __init__(self, alpha: float = 0.9, warmup: int = 0, importance: str = "none") -> None:
        super().__init__(None, alpha=alpha, warmup=warmup, importance=importance)
        self.alpha = self._number("alpha", alpha, low=0, high=1, high_open=True)
        self.warmup = self._whole("warmup", warmup, 0)
        self.importance = self._choice("importance", importance, ("none", "weight"))

    def bind_keys(self, keys) -> None:
        super().bind_keys(keys)
        self.monitors = tuple(f"train_loss/{k}" for k in self.keys)
        self.diagnostic_names = tuple(f"reward/{k}" for k in self.keys)

    def init(self) -> dict:
        return {"reward": [0.0] * len(self.keys)}

    def _eps(self, t: int) -> float:
        k = len(self.keys)
        return 1.0 / k if t <= 0 else min(1.0 / k, math.sqrt(math.log(k) / (k * t)))

    def _weights(self, state: dict, step: int) -> np.ndarray:
        k = len(self.keys)
        t = step - self.warmup + 1
        if t < 1:
            return np.full(k, 1.0 / k)
        eps, prev = self._eps(t), self._eps(t - 1)
        x = prev * np.asarray(state["reward"], dtype=np.float64)
        g = np.exp(x - x.max())
        return (1.0 - k * eps) * g / g.sum() + eps

    def value(self, state: dict, clock, inputs=None) -> dict[str, float]:
        return self._dict(_normalised(self._weights(state, clock.step)))

    def update(self, state: dict, clock, signals: dict) -> dict:
        losses = self._signals(signals, "train_loss")
        if all(x is None for x in losses):
            return state  # a probe update, or a step that reported nothing
        pi = self._weights(state, clock.step).tolist() if self.importance == "weight" else None
        reward = list(state["reward"])
        for i, loss in enumerate(losses):
            if loss is None:
                continue
            r = loss / pi[i] if pi is not None else loss
            new = self.alpha * reward[i] + (1.0 - self.alpha) * r
            if math.isfinite(new):
                reward[i] = new
        return {"reward": reward}

    def diagnose(self, state: dict) -> dict:
        return {f"reward/{k}": float(r) for k, r in zip(self.keys, state["reward"])}

    def check_state(self, state: dict) -> str | None:
        if not isinstance(state, dict) or set(state) != {"reward"}:
            return f"an odm state is an object with 'reward'; got {_short_value(state)}"
        return self._check_vector(state, "reward")


# -- DoReMi ----------------------------------------------------------------------------------------------


class DoReMi(_Mixer):
    """DoReMi-style domain reweighting (Xie et al. 2023, Algorithm 1), online.

    Each domain's training loss is smoothed, ``m_i <- beta m_i + (1 - beta) train_loss_i``
    (the first observation taken as is; a step that drew nothing from i leaves m_i), and every
    ``every`` steps, with ``lambda_i = max(m_i - reference_i, 0)`` (0 before i is observed)::

        a'_i = a_i exp(eta lambda_i)
        a_i  = (1 - c) a'_i / sum_j a'_j + c prior_i          (c = smoothing)

    The running average of the a's, the paper's output (the weights for a second run), is
    kept. ``reference_loss`` is the reference run's final training loss per domain, in the
    run's domain order; ``reference`` names that run for the runner, which reads it and fills
    ``reference_loss`` (this class never reads files).

    Differences from the paper: the excess is per domain (the domain's smoothed training
    loss minus the reference run's final training loss), not per token against a reference
    model scored on the same tokens. Per token, the sampling noise of a batch is the same for
    both models and cancels; per domain it does not, and clipping turns it into excess (a
    domain of pure noise, at its reference loss on average, would get max(noise, 0) > 0 at
    every step and, once the others reach their reference, all the weight). ``beta`` averages
    that noise out before the clip; ``beta=0`` is the paper's per-batch clip. And the weights
    drive sampling online (``follow='current'``, the default): the paper's proxy samples
    uniformly and uses the weights only to reweight its loss, which cadence does not do;
    ``follow='prior'`` samples by the prior while the weights are learned, ``follow='average'``
    by the running average. :meth:`averaged_weights` gives the average in every case.
    """

    name = "doremi"
    formula = ("a <- (1 - c) normalise(a * exp(eta * max(EMA_beta(train_loss) - reference_loss, 0))) + c * prior; "
               "output: the average of a over updates")
    source = ("Xie et al. 2023, DoReMi: Optimizing Data Mixtures Speeds Up Language Model Pretraining "
              "(arXiv 2305.10429), Algorithm 1")
    FOLLOW = ("current", "average", "prior")

    def __init__(self, reference: str | None = None, reference_loss: "list[float] | None" = None, eta: float = 1.0,
                 smoothing: float = 1e-3, prior: "list[float] | None" = None, every: int = 1,
                 beta: float = 0.9, follow: str = "current") -> None:
        super().__init__(None, reference=reference, reference_loss=reference_loss, eta=eta, smoothing=smoothing,
                         prior=prior, every=every, beta=beta, follow=follow)
        if reference is not None and (not isinstance(reference, str) or not reference.strip()
                                      or len(reference) > _MAX_PATH):
            raise ScheduleError(f"doremi: reference must be the path of a finished reference run; got "
                                f"{_short_value(reference)}")
        self.reference = reference
        self.reference_loss = self._numbers("reference_loss", reference_loss)
        self.eta = self._number("eta", eta, low=0, low_open=True)
        self.smoothing = self._number("smoothing", smoothing, low=0, high=1)
        self.prior = self._numbers("prior", prior, low=0)
        if self.prior is not None and max(self.prior, default=0.0) > 1e12:
            raise ScheduleError("doremi: prior holds relative weights, each at most 1e12")
        if self.prior is not None and not math.fsum(self.prior) > 0:
            raise ScheduleError("doremi: prior must have at least one weight > 0")
        self.every = self._whole("every", every, 1)
        self.beta = self._number("beta", beta, low=0, high=1, high_open=True)
        self.follow = self._choice("follow", follow, self.FOLLOW)

    def bind_keys(self, keys) -> None:
        super().bind_keys(keys)
        self._length("reference_loss", self.reference_loss)
        self._length("prior", self.prior)
        if self.smoothing == 0 and self.prior is not None and min(self.prior) == 0:
            raise ScheduleError("doremi: with smoothing=0 every prior weight must be > 0 (a weight at 0 never moves)")
        self.monitors = tuple(f"train_loss/{k}" for k in self.keys)
        self.diagnostic_names = tuple(f"average/{k}" for k in self.keys)

    def _prior(self) -> np.ndarray:
        k = len(self.keys)
        if self.prior is None:
            return np.full(k, 1.0 / k)
        p = np.asarray(self.prior, dtype=np.float64)
        return p / p.sum()

    def init(self) -> dict:
        if self.reference_loss is None:
            raise ScheduleError("doremi: needs a reference run's final per-domain losses: give reference_loss=[...] "
                                "(one per domain, in the run's order) or reference='path/to/run' for the runner to "
                                "read them")
        start = self._prior().tolist()
        return {"weights": start, "average": list(start), "updates": 0, "loss": [None] * len(self.keys)}

    def start_value(self, state) -> dict[str, float]:
        return self._dict(state["weights"] if self.follow != "prior" else self._prior())

    def value(self, state: dict, clock, inputs=None) -> dict[str, float]:
        if self.follow == "prior":
            return self._dict(self._prior())
        if self.follow == "average":
            return self._dict(state["average"])
        return self._dict(state["weights"])

    def update(self, state: dict, clock, signals: dict) -> dict:
        if not any(f"train_loss/{k}" in signals for k in self.keys):
            return state  # a probe update: no training step to count
        losses = self._signals(signals, "train_loss")
        smoothed = list(state["loss"])
        for i, loss in enumerate(losses):
            if loss is not None:
                new = loss if smoothed[i] is None else self.beta * smoothed[i] + (1.0 - self.beta) * loss
                if math.isfinite(new):
                    smoothed[i] = new
        if (clock.step + 1) % self.every:
            return {**state, "loss": smoothed}
        excess = np.array([0.0 if m is None else max(m - ref, 0.0) for m, ref in zip(smoothed, self.reference_loss)])
        excess[~np.isfinite(excess)] = 0.0  # a loss and a reference far apart in opposite directions
        # exponentiated gradient in log space: exp(eta * excess) may overflow, the normalised weights cannot
        logits = np.log(np.asarray(state["weights"], dtype=np.float64) + 1e-300) + self.eta * excess
        g = np.exp(logits - logits.max())
        weights = np.asarray(_normalised((1.0 - self.smoothing) * g / g.sum() + self.smoothing * self._prior()))
        n = state["updates"] + 1
        average = np.asarray(state["average"], dtype=np.float64)
        average = average + (weights - average) / n if n > 1 else weights
        return {"weights": weights.tolist(), "average": _normalised(average), "updates": n, "loss": smoothed}

    def averaged_weights(self, state: dict) -> dict[str, float]:
        """The average of the weights over every update so far: what the paper trains its second run on."""
        return self._dict(state["average"])

    def diagnose(self, state: dict) -> dict:
        return {f"average/{k}": float(w) for k, w in zip(self.keys, state["average"])}

    def check_state(self, state: dict) -> str | None:
        fields = {"weights", "average", "updates", "loss"}
        if not isinstance(state, dict) or set(state) != fields:
            return f"a doremi state is an object with {', '.join(sorted(fields))}; got {_short_value(state)}"
        for field in ("weights", "average"):
            problem = self._check_vector(state, field, weights=True)
            if problem:
                return problem
        return self._check_vector(state, "loss", nullable=True) or self._count(state, "updates")


# -- Aioli -----------------------------------------------------------------------------------------------


class Aioli(_Mixer):
    """Aioli (Chen et al. 2024, Algorithms 1 and 2): learn the linear dynamic mixing law in rounds.

    The run (S steps) is cut into ``rounds`` rounds of R = S / rounds steps (rounded down to a
    multiple of ``probe_every``). Each round starts with LearnParams: ``sweeps`` sweeps, each
    training on every domain's perturbed mixture once, in an order drawn from
    ``default_rng([seed, round, sweep])``, for ``seg`` steps each; the perturbed mixture of
    domain j is ``(1 - eps) one_hot(j) + eps / m``. seg is the largest multiple of
    ``probe_every`` with ``sweeps * m * seg <= delta * R`` (at least ``probe_every``), so the
    probe falls on every segment's boundaries. The drop of each domain's probe loss over a
    segment, averaged over sweeps, is D[i, j]; the linear dynamic mixing law
    ``L_i(t+1) = L_i(t) - sum_l A_il p_l`` gives ``D = A W`` for the matrix W of perturbed
    mixtures, so A = D W^-1. A is normalised (shifted to be >= 0 if it has a negative entry,
    then divided by its sum), and the mixture becomes ``p <- p * exp(eta * sum_i A_ij)``,
    normalised, for the rest of the round.

    The probe is measured after each step count that is a multiple of ``probe_every``; none is
    measured before the first step, so round 0's first segment has no starting loss and is not
    counted (with sweeps >= 2 every domain is still measured). A round in which some domain's
    mixture was never measured (probes missing) leaves p as it was. Steps after the last whole
    round train on p. ``diagnose`` reports how many rounds have closed.
    """

    name = "aioli"
    formula = ("per round: D[i, j] = drop of probe_loss_i over a segment on mixture (1 - eps) e_j + eps/m; "
               "A = D W^-1, normalised; p <- p * exp(eta * sum_i A_ij)")
    source = ("Chen, Hu, Lourie, Cho, Re 2024, Aioli: A Unified Optimization Framework for Language Model "
              "Data Mixing (arXiv 2411.05735), Algorithms 1-2")
    needs_total = True

    def __init__(self, rounds: int = 20, delta: float = 0.128, sweeps: int = 4, eps: float = 0.75, eta: float = 0.2,
                 probe_every: int = 4, prior: "list[float] | None" = None, seed: int = 0) -> None:
        super().__init__(None, rounds=rounds, delta=delta, sweeps=sweeps, eps=eps, eta=eta, probe_every=probe_every,
                         prior=prior, seed=seed)
        self.rounds = self._whole("rounds", rounds, 1)
        self.delta = self._number("delta", delta, low=0, high=1, low_open=True, high_open=True)
        self.sweeps = self._whole("sweeps", sweeps, 1)
        self.eps = self._number("eps", eps, low=0, high=1, high_open=True)
        self.eta = self._number("eta", eta, low=0, low_open=True)
        self.probe_every = self._whole("probe_every", probe_every, 1)
        self.prior = self._numbers("prior", prior, low=0)
        if self.prior is not None and not min(self.prior) > 0:
            raise ScheduleError("aioli: every prior weight must be > 0 (the update multiplies weights: 0 stays 0)")
        self.seed = self._whole("seed", seed, 0)
        self._layouts: dict[float, tuple[int, int, int]] = {}

    def bind_keys(self, keys) -> None:
        super().bind_keys(keys)
        self._length("prior", self.prior)
        self._layouts = {}  # a layout depends on the number of domains
        self.monitors = tuple(f"probe_loss/{k}" for k in self.keys)
        self.diagnostic_names = ("rounds_done",)

    # -- the layout of the run ------------------------------------------------------------------------------
    def _total_steps(self, ctx) -> float:
        if ctx.total is None:
            raise ScheduleError("aioli() needs the run's length (its rounds are fractions of it)")
        if ctx.unit is Unit.STEP:
            return float(ctx.total)
        if ctx.step_length is None:
            raise ScheduleError("aioli: its rounds are counted in optimizer steps; on a sample or token clock the "
                                "batch must be constant")
        return float(ctx.total) / float(ctx.step_length)

    def _layout(self, ctx) -> tuple[int, int, int]:
        """(R, seg, learn): steps per round, per perturbed-mixture segment, and of LearnParams per round."""
        total = self._total_steps(ctx)
        if total in self._layouts:
            return self._layouts[total]
        m, n = len(self.keys), self.probe_every
        r = int(total // self.rounds) // n * n
        seg = max(1, int(self.delta * r) // (self.sweeps * m * n)) * n
        learn = self.sweeps * m * seg
        if learn >= r:
            raise ScheduleError(f"aioli: a round of {r} steps ({int(total)} steps / {self.rounds} rounds, a multiple "
                                f"of probe_every={n}) cannot hold its {self.sweeps} sweeps x {m} mixtures x {seg} "
                                "steps and still train on the mixture; use fewer rounds or sweeps, or a smaller "
                                "probe_every")
        if len(self._layouts) < 8:
            self._layouts[total] = (r, seg, learn)
        return r, seg, learn

    def _check(self, ctx) -> None:
        if self.keys is not None:
            self._layout(ctx)

    def _order(self, round_: int, sweep: int) -> list[int]:
        return np.random.default_rng([self.seed, round_, sweep]).permutation(len(self.keys)).tolist()

    def _mixtures(self) -> np.ndarray:
        """W: row j is the perturbed mixture that trains mostly on domain j."""
        m = len(self.keys)
        return (1.0 - self.eps) * np.eye(m) + self.eps / m

    def _segment(self, step: int, layout) -> "tuple[int, int] | None":
        """(round, domain) of the LearnParams segment that contains ``step``, or None outside LearnParams."""
        r_len, seg, learn = layout
        round_ = step // r_len
        offset = step - round_ * r_len
        if round_ >= self.rounds or offset >= learn:
            return None
        j = offset // seg
        m = len(self.keys)
        return round_, self._order(round_, j // m)[j % m]

    # -- the controller -------------------------------------------------------------------------------------
    def init(self) -> dict:
        m = len(self.keys)
        start = [1.0 / m] * m if self.prior is None else _normalised(np.asarray(self.prior, dtype=np.float64))
        return {"weights": start, "rounds_done": 0, "last": None, "drops": [[0.0] * m for _ in range(m)],
                "counts": [[0] * m for _ in range(m)]}

    def start_value(self, state) -> dict[str, float]:
        return self._dict(state["weights"])

    def value(self, state: dict, clock, inputs=None) -> dict[str, float]:
        where = self._segment(clock.step, self._layout(clock.context))
        if where is None:
            return self._dict(state["weights"])
        return self._dict(_normalised(self._mixtures()[where[1]]))

    def _finish(self, state: dict, through: int, layout) -> dict:
        """Close every round whose LearnParams ended at or before step ``through``."""
        r_len, _, learn = layout
        while state["rounds_done"] < self.rounds and state["rounds_done"] * r_len + learn <= through:
            weights = state["weights"]
            counts = np.asarray(state["counts"])
            if counts.min() > 0:
                d = np.asarray(state["drops"], dtype=np.float64) / counts
                a = d @ np.linalg.inv(self._mixtures())  # D = A W, W symmetric
                if a.min() < 0:
                    a = a - a.min()
                if np.isfinite(a).all() and a.sum() > 0:
                    a = a / a.sum()
                    logits = np.log(np.asarray(weights, dtype=np.float64)) + self.eta * a.sum(axis=0)
                    weights = _normalised(np.exp(logits - logits.max()))
            m = len(self.keys)
            state = {**state, "weights": weights, "rounds_done": state["rounds_done"] + 1,
                     "drops": [[0.0] * m for _ in range(m)], "counts": [[0] * m for _ in range(m)]}
        return state

    def update(self, state: dict, clock, signals: dict) -> dict:
        layout = self._layout(clock.context)
        s = clock.step
        if not any(f"probe_loss/{k}" in signals for k in self.keys):
            return self._finish(state, s, layout)  # a training step: the probe at s, if any, came before it
        losses = self._signals(signals, "probe_loss")
        state = self._finish(state, s - 1, layout)
        r_len, seg, learn = layout
        start = s - seg
        where = self._segment(start, layout) if start >= 0 and start % r_len % seg == 0 else None
        last = state["last"]
        if where is not None and where[0] == state["rounds_done"] and last is not None and last["step"] == start:
            j = where[1]
            drops = [list(row) for row in state["drops"]]
            counts = [list(row) for row in state["counts"]]
            for i, (before, after) in enumerate(zip(last["loss"], losses)):
                if before is not None and after is not None and math.isfinite(before - after):
                    drops[i][j] += before - after
                    counts[i][j] += 1
            state = {**state, "drops": drops, "counts": counts}
        if s % r_len % seg == 0 and s % r_len <= learn:  # a segment's boundary: the next one starts from here
            state = {**state, "last": {"step": s, "loss": losses}}
        return self._finish(state, s, layout)

    def diagnose(self, state: dict) -> dict:
        return {"rounds_done": state["rounds_done"]}

    def check_state(self, state: dict) -> str | None:
        fields = {"weights", "rounds_done", "last", "drops", "counts"}
        if not isinstance(state, dict) or set(state) != fields:
            return f"an aioli state is an object with {', '.join(sorted(fields))}; got {_short_value(state)}"
        problem = self._check_vector(state, "weights", weights=True) or self._count(state, "rounds_done")
        if problem:
            return problem
        if state["rounds_done"] > self.rounds:
            return f"rounds_done is at most rounds={self.rounds}; got {state['rounds_done']}"
        if min(state["weights"]) <= 0:
            return "weights must be > 0 (the update multiplies them: a weight at 0 stays 0)"
        last = state["last"]
        if last is not None:
            if not isinstance(last, dict) or set(last) != {"step", "loss"}:
                return f"last must be null or an object with step and loss; got {_short_value(last)}"
            problem = self._count(last, "step") or self._check_vector(last, "loss", nullable=True)
            if problem:
                return f"last: {problem}"
        m = len(self.keys)
        for field in ("drops", "counts"):
            rows = state[field]
            if not isinstance(rows, list) or len(rows) != m:
                return f"{field} must be a {m} x {m} list of numbers; got {_short_value(rows)}"
            for row in rows:
                problem = self._check_vector({field: row}, field)
                if problem:
                    return problem
                if field == "counts" and any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in row):
                    return f"counts must hold whole numbers >= 0; got {_short_value(row)}"
        return None


MIXERS = (ODM, DoReMi, Aioli)
