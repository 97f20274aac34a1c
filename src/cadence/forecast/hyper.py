"""Hyperparameter laws: a starting learning rate and batch size from the model and data size.

Each law says where it comes from and which inputs its sources document. An input outside
that range is *flagged* (``Advice.flags``), never silently extrapolated: the numbers are
still computed, since a power law is the best available guess, but the caller is told it
is a guess beyond the evidence.

The documented ranges are what cadence can cite, not necessarily everything the authors
trained; docs/forecast.md says how each was established.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

from cadence.errors import CadenceError, ForecastError, LimitError
from cadence.forecast.limits import MAX_COUNT, shorten
from cadence.time import parse_count

__all__ = ["Advice", "step_law", "power_scheduler", "recommend", "parse_count"]


@dataclass
class Advice:
    """What one law recommends. ``values`` are plain numbers; ``flags`` is empty when every
    input is inside the law's documented range."""

    law: str
    source: str
    formula: list[str]
    values: dict[str, float]
    documented: str
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    spec: str | None = None

    @property
    def in_range(self) -> bool:
        return not self.flags

    def to_dict(self) -> dict:
        return {"law": self.law, "source": self.source, "formula": self.formula, "values": self.values,
                "documented_range": self.documented, "in_range": self.in_range, "flags": self.flags,
                "notes": self.notes, "spec": self.spec}


def _count(value, name: str, what: str) -> float:
    """A count in 1..MAX_COUNT (a number or a string such as 350M); a one-line error naming ``name``."""
    try:
        n = parse_count(value, what)
    except CadenceError:
        raise ForecastError(f"{what} must be a positive number such as 1e9, 350M, 1.5B or 2T; got {shorten(value)}",
                            field=name) from None
    if n < 1:
        raise ForecastError(f"{what} must be at least 1; got {shorten(value)}", field=name)
    if n > MAX_COUNT:
        raise LimitError(f"{what} is limited to {MAX_COUNT:.0e}; got {shorten(value)}", field=name)
    return n


def _seq_len(value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= value <= MAX_COUNT:
        raise ForecastError(f"the sequence length must be a whole number of tokens in 1..{MAX_COUNT:.0e}; "
                            f"got {shorten(value)}", field="seq_len")
    return int(value)


def _human(x: float) -> str:
    for size, name in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if x >= size:
            return f"{x / size:.3g}{name}"
    return f"{x:.3g}"


# Step Law (Li et al. 2025). What can be cited about where it holds:
#  * the optimum it predicts was checked against a full LR x batch grid search at
#    400M parameters / 40B tokens and 1B / 100B (the paper's Figure 1, project page);
#  * the authors state that the paper does not cover models above 7B (step-law/steplaw issue #4).
STEP_N = (4e8, 1e9)
STEP_D = (4e10, 1e11)
STEP_N_UNDISCUSSED = 7e9


def step_law(params: float, tokens: float, seq_len: int | None = None) -> Advice:
    """Step Law optimum: ``lr = 1.79 N^-0.713 D^0.307``, ``batch = 0.58 D^0.571`` tokens.

    ``params`` is N, the non-embedding parameter count; ``tokens`` is D, the training tokens.
    With ``seq_len`` the batch is also given in sequences (rounded, at least 1) and the run
    length in optimizer steps.
    """
    n = _count(params, "params", "the parameter count N")
    d = _count(tokens, "tokens", "the token count D")
    if seq_len is not None:
        seq_len = _seq_len(seq_len)
    lr = 1.79 * n ** -0.713 * d ** 0.307
    batch_tokens = 0.58 * d ** 0.571
    values = {"params": n, "tokens": d, "peak_lr": lr, "batch_tokens": batch_tokens}
    if seq_len is not None:
        seqs = max(1, round(batch_tokens / seq_len))
        values.update(seq_len=float(seq_len), batch_sequences=float(seqs), steps=float(math.ceil(d / (seqs * seq_len))))
    advice = Advice(
        law="step-law",
        source='Li et al. 2025, "Predictable Scale: Part I, Step Law", arXiv 2503.04715',
        formula=["peak lr = 1.79 * N^-0.713 * D^0.307", "batch  = 0.58 * D^0.571 tokens",
                 "N = non-embedding parameters, D = training tokens"],
        values=values,
        documented=(f"optimum checked by grid search at N={_human(STEP_N[0])}, D={_human(STEP_D[0])} and "
                    f"N={_human(STEP_N[1])}, D={_human(STEP_D[1])}; the paper does not discuss models above "
                    f"{_human(STEP_N_UNDISCUSSED)} (authors, step-law/steplaw issue #4)"),
        notes=["fitted on AdamW runs that decay to a fixed final LR of 1e-5; the landscape near the optimum is flat, "
               "so treat it as the centre of a short sweep"],
    )
    if not STEP_N[0] <= n <= STEP_N[1]:
        advice.flags.append(f"N={_human(n)} is outside the documented {_human(STEP_N[0])}-{_human(STEP_N[1])} "
                            "parameters: extrapolated")
    if n > STEP_N_UNDISCUSSED:
        advice.flags.append(f"N={_human(n)} is above {_human(STEP_N_UNDISCUSSED)}, which the paper does not discuss")
    if not STEP_D[0] <= d <= STEP_D[1]:
        advice.flags.append(f"D={_human(d)} is outside the documented {_human(STEP_D[0])}-{_human(STEP_D[1])} "
                            "tokens: extrapolated")
    return advice


# Power scheduler (Shen et al. 2024). Its constants a=4.6, b=-0.51, lr_max=0.02 were fitted
# with muP on small proxy models and used for 3B dense and MoE models (the paper's abstract).
POWER_A, POWER_B, POWER_MAX = 4.6, -0.51, 0.02
POWER_N_MAX = 3e9


def power_scheduler(params: float, tokens: float, batch_sequences: float, seq_len: int) -> Advice:
    """Power scheduler setting: ``lr(n) = min(0.02, batch * 4.6 * n^-0.51)``, n = tokens seen.

    ``batch_sequences`` is the batch size in sequences (cadence reads the paper's batch size
    that way: in tokens the formula would exceed its own 0.02 cap for any realistic run).
    """
    n = _count(params, "params", "the parameter count N")
    d = _count(tokens, "tokens", "the token count D")
    beta = _count(batch_sequences, "batch", "the batch size in sequences")
    seq_len = _seq_len(seq_len)
    lr_end = min(POWER_MAX, beta * POWER_A * d ** POWER_B)
    # The LR leaves the 0.02 cap once beta * a * n^b < 0.02.
    leaves_cap = (POWER_MAX / (beta * POWER_A)) ** (1.0 / POWER_B)
    advice = Advice(
        law="power-scheduler",
        source='Shen et al. 2024, "Power Scheduler: A Batch Size and Token Number Agnostic Learning Rate Scheduler", '
               "arXiv 2408.13359",
        formula=["lr(n) = min(0.02, batch * 4.6 * n^-0.51)", "n = tokens seen, batch = sequences per optimizer step"],
        values={"params": n, "tokens": d, "batch_sequences": beta, "seq_len": float(seq_len),
                "lr_at_end": lr_end, "cap_until_tokens": leaves_cap},
        documented=f"constants fitted with muP on small proxy models; used for models up to {_human(POWER_N_MAX)}",
        notes=["the constants assume muP; with standard parametrisation they are not expected to transfer",
               "add decay=... (and a shape) to the spec for a final annealing phase"],
        spec=(f"power(peak={POWER_MAX:g}, a={POWER_A:g}, b={POWER_B:g}, batch={beta:g}, per='tok')"),
    )
    if n > POWER_N_MAX:
        advice.flags.append(f"N={_human(n)} is above {_human(POWER_N_MAX)}, the largest models the paper trained with it")
    return advice


def recommend(params: float, tokens: float, seq_len: int | None = None,
              batch_sequences: float | None = None) -> list[Advice]:
    """Both laws for one (N, D). The Power scheduler needs a batch in sequences: ``batch_sequences``
    or, with ``seq_len``, the Step Law batch converted to sequences."""
    if seq_len is not None:
        seq_len = _seq_len(seq_len)
    if batch_sequences is not None and seq_len is None:
        raise ForecastError("a batch size in sequences needs the sequence length (the Power scheduler counts tokens "
                            "seen)", field="seq_len")
    out = [step_law(params, tokens, seq_len)]
    if batch_sequences is None and seq_len is not None:
        batch_sequences = out[0].values["batch_sequences"]
    if batch_sequences is not None:
        out.append(power_scheduler(params, tokens, batch_sequences, seq_len))
    return out
