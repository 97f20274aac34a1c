"""Small real workloads that train on a CPU in minutes, with data already on the machine.

* ``tiny-lm``: a byte-level causal transformer on the source code of the running
  interpreter's standard library (train/validation split by a stable hash of the path).
* ``digits`` / ``digits-cnn``: an MLP / a small CNN on scikit-learn's bundled digits.
* ``logreg``: logistic regression on scikit-learn's bundled breast-cancer data (convex).
* ``text``: tiny-lm's model on a corpus of domains (the subfolders of a data folder, or three
  built from the standard library), each batch drawn over the domains by a mixture.

Every batch is a pure function of (seed, step): nothing about the data stream needs to be
saved to resume a run exactly.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import hashlib
import math
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cadence.errors import CadenceError
from cadence.time import Rates

__all__ = ["Workload", "WORKLOADS", "get_workload", "step_generator", "data_progress"]

_DATA_PROGRESS: contextvars.ContextVar = contextvars.ContextVar("cadence_data_progress", default=None)


@contextlib.contextmanager
def data_progress(progress):
    """Within it, a workload that reads its data shows that on stderr (``"bar"``, ``"lines"``, or None: silent).

    tiny-lm reads the standard library's source the first time it needs its data (10-40 s
    with a cold disk cache): ``"bar"`` shows the files read and megabytes, ``"lines"`` one
    line when it starts and one when it is done. Data already read says nothing.
    """
    from cadence.bench.logs import progress_mode

    token = _DATA_PROGRESS.set(progress_mode(progress))
    try:
        yield
    finally:
        _DATA_PROGRESS.reset(token)


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A generator whose state depends only on (seed, step, stream)."""
    digest = hashlib.blake2b(f"{seed}/{step}/{stream}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))


@dataclass
class Workload(abc.ABC):
    """What the runner needs from a workload. Subclasses fill in the data and the model."""

    name: str = ""
    description: str = ""
    sizes: tuple[str, ...] = ("small",)
    default_size: str = "small"
    batch_size: int = 32
    default_steps: int = 1000
    eval_every: int = 50
    default_lr: str = "cosine(peak=1e-3, warmup='5%')"
    weight_decay: float = 0.0
    clip: float | None = 1.0
    metrics: tuple[str, ...] = ("val_loss",)
    max_batch_size: int = 1 << 16  # a documented limit: larger batches are refused, not attempted
    _data: dict = field(default_factory=dict, repr=False)

    @abc.abstractmethod
    def rates(self, batch_size: int) -> Rates:
        """Samples per step, tokens per sample, steps per epoch."""

    @abc.abstractmethod
    def model(self, size: str) -> nn.Module:
        """A freshly initialised model of the given size."""

    @abc.abstractmethod
    def batch(self, seed: int, step: int, batch_size: int):
        """The batch of a step: a pure function of (seed, step)."""

    @abc.abstractmethod
    def loss(self, model: nn.Module, batch) -> torch.Tensor:
        """The training loss of a batch."""

    #: Extra loss terms a plan can weigh with a ``loss.<term>`` channel (see :meth:`losses`).
    loss_terms: tuple[str, ...] = ()

    def losses(self, model: nn.Module, batch) -> dict[str, torch.Tensor]:
        """The main loss under ``""`` and every extra term in ``loss_terms``, from one forward pass.

        The runner minimises ``losses[""] + sum(coefficient * losses[term])``, each
        coefficient being the value of the plan's ``loss.<term>`` channel; terms without a
        channel are not computed into the objective (and cost nothing when not asked for).
        """
        return {"": self.loss(model, batch)}

    def per_sample(self, model: nn.Module, batch, terms: "tuple[str, ...]" = ()) -> dict[str, torch.Tensor]:
        """The loss of each sample under ``""`` (a vector whose mean is :meth:`loss`), and each extra term of
        ``terms`` (a mean over the batch), from one forward pass: what per-domain losses and per-sample
        weights (the ``sample_weights`` channel) are made of."""
        from cadence.errors import CadenceError

        raise CadenceError(f"the {self.name} workload gives no per-sample loss", field="sample_weights")

    @abc.abstractmethod
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Validation metrics on the fixed held-out set."""

    def fingerprint(self) -> str:
        """Identifies the data, so a resumed run can check it trains on the same thing."""
        return "-"

    def metric_names(self) -> tuple[str, ...]:
        """What :meth:`evaluate` returns (metrics.csv columns): ``metrics``, unless the data decides."""
        return tuple(self.metrics)

    def domain_names(self) -> tuple[str, ...]:
        """The data's domains, for a workload that draws batches over domains (else none)."""
        return ()

    def corpus_record(self) -> "dict | None":
        """A per-domain description of the data that run.json keeps, to name what changed (else None)."""
        return None

    def data_changes(self, recorded) -> str:
        """What differs between ``recorded`` (an earlier :meth:`corpus_record`) and the data here, in words."""
        return ""

    def check_size(self, size: str) -> str:
        if not isinstance(size, str) or size not in self.sizes:
            raise CadenceError(f"{self.name}: unknown size {size!r}; allowed: {', '.join(self.sizes)}", field="size")
        return size

    #: What :meth:`monitors` measures of the model's most recent training forward pass (metrics.csv columns).
    monitor_names: tuple[str, ...] = ()
    #: Steps between measurements of a monitor that costs more than ~1% of a step (see :meth:`monitors`).
    monitor_every: int = 1

    def monitors(self, model: nn.Module, step: int | None = None) -> dict[str, float]:
        """The values of ``monitor_names`` for the model's most recent forward pass in training mode.

        NaN before the first such pass, and, when ``step`` is given, for a costly monitor at a
        step that is not a multiple of ``monitor_every`` (it is not computed then). Without
        ``step`` every monitor is computed.
        """
        return {}


# -- tiny-lm ----------------------------------------------------------------------------------

class _Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.training:  # kept for the monitor (autograd keeps them until the backward pass anyway)
            self.last_qk = (q.detach(), k.detach())
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


def _attention_logit_max(q: torch.Tensor, k: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """The largest pre-softmax logit q.k / sqrt(d_head) that causal attention uses (over batch, heads, positions).

    ``q``, ``k``: (batch, heads, positions, d_head). Computed apart from the attention (which
    does not expose its logits), without autograd: the loss and gradients are the same bits.
    The scores are formed ``chunk`` (sequence, head) pairs at a time so they stay in cache.
    """
    with torch.no_grad():
        t, scale = q.shape[-2], q.shape[-1] ** -0.5
        q, k = q.flatten(0, 1), k.flatten(0, 1)
        best = None
        for i in range(0, q.shape[0], chunk):  # max over sequences and heads first: a t x t matrix is left
            scores = torch.bmm(q[i:i + chunk], k[i:i + chunk].transpose(1, 2)).amax(dim=0)
            best = scores if best is None else torch.maximum(best, scores)
        future = torch.ones(t, t, dtype=torch.bool, device=q.device).triu_(1)
        return best.masked_fill_(future, -math.inf).amax() * scale  # then over causal positions; scale > 0


class ByteGPT(nn.Module):
    """A small GPT over bytes: learned positions, pre-norm blocks, tied output embedding."""

    def __init__(self, d: int, layers: int, heads: int, context: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, d)
        self.pos = nn.Parameter(torch.zeros(context, d))
        self.blocks = nn.ModuleList(_Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.pos, std=0.02)
        self.logit_max = None  # the largest |output logit| of the last training forward pass (a 0-d tensor)

    def forward(self, idx):
        x = self.embed(idx) + self.pos[: idx.shape[1]]
        for block in self.blocks:
            x = block(x)
        logits = self.ln(x) @ self.embed.weight.T
        if self.training:
            with torch.no_grad():
                low, high = torch.aminmax(logits.detach())
                self.logit_max = torch.maximum(high, -low)
        return logits

    def attention_logit_max(self) -> torch.Tensor | None:
        """The largest pre-softmax attention logit of the last training forward pass, over layers, the batch,
        heads and causal positions (None before the first). Costs about one more q.k product per layer."""
        kept = [block.last_qk for block in self.blocks if getattr(block, "last_qk", None) is not None]
        if not kept:
            return None
        return torch.stack([_attention_logit_max(q, k) for q, k in kept]).amax()


@dataclass
class TinyLM(Workload):
    name: str = "tiny-lm"
    description: str = "byte-level causal transformer on the Python standard library's source"
    sizes: tuple[str, ...] = ("xs", "small", "medium")
    default_steps: int = 2000
    default_lr: str = "cosine(peak=2e-3, final=2e-4, warmup='5%')"
    weight_decay: float = 0.1
    context: int = 128
    val_fraction: float = 0.05
    val_batches: int = 16
    max_train_bytes: int = 24_000_000
    max_batch_size: int = 1024  # 131K tokens a step: beyond it a CPU run swaps rather than trains
    shapes = {"xs": (64, 2, 4), "small": (128, 4, 4), "medium": (256, 6, 8)}

    def _corpus(self):
        if "train" not in self._data:
            from cadence.bench.logs import DataProgress

            root = Path(sysconfig.get_paths()["stdlib"])
            shown = DataProgress(_DATA_PROGRESS.get(), self.name, f"the Python standard library's source under {root}")
            try:
                self._read_corpus(root, shown)
            except BaseException:
                shown.close(ok=False)
                raise
            shown.close()
        return self._data["train"], self._data["val"]

    def _read_corpus(self, root: Path, shown) -> None:
        files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
        if not files:
            raise CadenceError(f"tiny-lm: no Python source found under {root}")
        shown.start(len(files))
        train, val, names = [], [], hashlib.sha256()
        size = read = 0
        for done, path in enumerate(files, 1):
            rel = path.relative_to(root).as_posix()
            # Stable split: a file's side depends only on its path.
            bucket = int.from_bytes(hashlib.sha256(rel.encode()).digest()[:4], "little") / 2**32
            try:
                data = path.read_bytes()
            except OSError:
                continue
            read += len(data)
            shown.update(done, read)
            if bucket < self.val_fraction:
                val.append(data)
            elif size < self.max_train_bytes:
                train.append(data)
                size += len(data)
            else:
                continue
            names.update(rel.encode() + len(data).to_bytes(8, "little"))
        self._data["train"] = torch.frombuffer(bytearray(b"".join(train)), dtype=torch.uint8).long()
        self._data["val"] = torch.frombuffer(bytearray(b"".join(val)), dtype=torch.uint8).long()
        self._data["fingerprint"] = names.hexdigest()[:16]

    def fingerprint(self) -> str:
        self._corpus()
        return self._data["fingerprint"]

    def rates(self, batch_size: int) -> Rates:
        train, _ = self._corpus()
        return Rates(samples_per_step=batch_size, tokens_per_sample=self.context,
                     steps_per_epoch=len(train) / (batch_size * self.context))

    def model(self, size: str) -> nn.Module:
        d, layers, heads = self.shapes[self.check_size(size)]
        return ByteGPT(d, layers, heads, self.context)

    def _windows(self, data, starts):
        idx = starts[:, None] + torch.arange(self.context + 1)
        chunk = data[idx]
        return chunk[:, :-1], chunk[:, 1:]

    def batch(self, seed: int, step: int, batch_size: int):
        train, _ = self._corpus()
        starts = torch.randint(0, len(train) - self.context - 1, (batch_size,), generator=step_generator(seed, step))
        return self._windows(train, starts)

    loss_terms: tuple[str, ...] = ("z",)

    def loss(self, model, batch):
        x, y = batch
        logits = model(x)
        return F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1))

    def losses(self, model, batch):
        """Cross-entropy and the z-loss, mean of log(Z)^2 over positions (PaLM, Chowdhery et al. 2022)."""
        x, y = batch
        logits = model(x).reshape(-1, 256)
        return {"": F.cross_entropy(logits, y.reshape(-1)), "z": torch.logsumexp(logits, dim=-1).square().mean()}

    def per_sample(self, model, batch, terms: "tuple[str, ...]" = ()) -> "dict[str, torch.Tensor]":
        """Each sequence's loss (the mean over its positions), and the z-loss when asked for."""
        x, y = batch[0], batch[1]
        logits = model(x)
        per = F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1), reduction="none").view(y.shape).mean(dim=1)
        out = {"": per}
        if "z" in terms:
            out["z"] = torch.logsumexp(logits.reshape(-1, 256), dim=-1).square().mean()
        return out

    monitor_names: tuple[str, ...] = ("attn_logit_max", "logit_max")
    monitor_every: int = 10  # attn_logit_max costs ~4.5% of an xs step on a CPU: measured every 10th step

    def monitors(self, model, step: int | None = None) -> dict[str, float]:
        """Of the model's most recent forward pass in training mode (the last micro-batch's):

        * ``attn_logit_max``: the largest pre-softmax attention logit q.k/sqrt(d_head), over
          layers, the batch, heads and causal positions. Computed here from the q and k the
          forward pass kept (about one more q.k product per layer), so only when asked: with
          ``step``, at multiples of ``monitor_every`` only (NaN between).
        * ``logit_max``: the largest |output logit| (recorded by the forward pass; nearly free).
        """
        net = model
        while hasattr(net, "module") or hasattr(net, "_orig_mod"):  # DistributedDataParallel, torch.compile
            net = getattr(net, "module", None) or getattr(net, "_orig_mod")
        out = dict.fromkeys(self.monitor_names, math.nan)
        if getattr(net, "logit_max", None) is not None:
            out["logit_max"] = float(net.logit_max)
        if step is None or step % self.monitor_every == 0:
            attention = net.attention_logit_max()
            if attention is not None:
                out["attn_logit_max"] = float(attention)
        return out

    def evaluate(self, model) -> dict[str, float]:
        _, val = self._corpus()
        if "val_batches" not in self._data:  # the same held-out windows for every run and seed
            g = torch.Generator().manual_seed(12345)
            starts = torch.randint(0, len(val) - self.context - 1, (self.val_batches, 32), generator=g)
            self._data["val_batches"] = [self._windows(val, s) for s in starts]
        device = next(model.parameters()).device
        total = 0.0
        with torch.no_grad():
            for x, y in self._data["val_batches"]:
                total += float(self.loss(model, (x.to(device), y.to(device))))
        return {"val_loss": total / len(self._data["val_batches"])}


# -- scikit-learn data sets ---------------------------------------------------------------------

def _split(n: int, val_fraction: float):
    order = np.random.default_rng(0).permutation(n)  # fixed for every run: the split is the data set's
    n_val = int(round(n * val_fraction))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


@dataclass
class _Tabular(Workload):
    """A classifier on an in-memory data set, sampled in epochs without replacement."""

    val_fraction: float = 0.2
    metrics: tuple[str, ...] = ("val_loss", "val_accuracy")

    @abc.abstractmethod
    def _load(self):
        """(features, labels) of the whole data set."""

    def _arrays(self):
        if "x" not in self._data:
            x, y = self._load()
            tr, va = _split(len(y), self.val_fraction)
            self._data.update(x=torch.tensor(x[tr], dtype=torch.float32), y=torch.tensor(y[tr]),
                              xv=torch.tensor(x[va], dtype=torch.float32), yv=torch.tensor(y[va]))
        return self._data["x"], self._data["y"]

    def _steps_per_epoch(self, batch_size: int) -> int:
        n = len(self._arrays()[1])
        if batch_size > n:
            raise CadenceError(f"{self.name}: batch size {batch_size} is larger than the training set ({n} samples)",
                              field="batch_size")
        return n // batch_size

    def rates(self, batch_size: int) -> Rates:
        return Rates(samples_per_step=batch_size, tokens_per_sample=1, steps_per_epoch=self._steps_per_epoch(batch_size))

    def batch(self, seed: int, step: int, batch_size: int):
        x, y = self._arrays()
        per_epoch = self._steps_per_epoch(batch_size)
        epoch, j = divmod(step, per_epoch)
        order = torch.randperm(len(y), generator=step_generator(seed, epoch, stream=1))
        pick = order[j * batch_size:(j + 1) * batch_size]
        return x[pick], y[pick]

    def loss(self, model, batch):
        x, y = batch
        return F.cross_entropy(model(x), y)

    def per_sample(self, model, batch, terms: "tuple[str, ...]" = ()) -> "dict[str, torch.Tensor]":
        x, y = batch
        return {"": F.cross_entropy(model(x), y, reduction="none")}

    def evaluate(self, model) -> dict[str, float]:
        self._arrays()
        device = next(model.parameters()).device
        xv, yv = self._data["xv"].to(device), self._data["yv"].to(device)
        with torch.no_grad():
            logits = model(xv)
            loss = float(F.cross_entropy(logits, yv))
            acc = float((logits.argmax(dim=1) == yv).float().mean())
        return {"val_loss": loss, "val_accuracy": acc}

    def fingerprint(self) -> str:
        x, y = self._arrays()
        h = hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes())
        return h.hexdigest()[:16]


def _sklearn(name: str):
    try:
        from sklearn import datasets
    except ImportError:
        raise CadenceError(f"the {name} workload needs scikit-learn: pip install 'cadence[bench]'") from None
    return datasets


@dataclass
class Digits(_Tabular):
    name: str = "digits"
    description: str = "MLP on scikit-learn's 8x8 digits (1797 images, 10 classes)"
    sizes: tuple[str, ...] = ("small", "medium")
    batch_size: int = 64
    default_steps: int = 600
    eval_every: int = 20
    default_lr: str = "cosine(peak=3e-3, warmup='5%')"
    weight_decay: float = 1e-4
    clip: float | None = None
    widths = {"small": 64, "medium": 256}

    def _load(self):
        d = _sklearn(self.name).load_digits()
        return d.data / 16.0, d.target

    def model(self, size: str) -> nn.Module:
        w = self.widths[self.check_size(size)]
        return nn.Sequential(nn.Linear(64, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 10))


class _Image(nn.Module):
    def forward(self, x):
        return x.view(-1, 1, 8, 8)


@dataclass
class DigitsCNN(Digits):
    name: str = "digits-cnn"
    description: str = "small CNN on scikit-learn's 8x8 digits"
    widths = {"small": 16, "medium": 32}

    def model(self, size: str) -> nn.Module:
        c = self.widths[self.check_size(size)]
        return nn.Sequential(_Image(), nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, 2 * c, 3, padding=1),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * c * 16, 10))


@dataclass
class LogReg(_Tabular):
    name: str = "logreg"
    description: str = "logistic regression on scikit-learn's breast-cancer data (569 samples, convex)"
    sizes: tuple[str, ...] = ("small",)
    batch_size: int = 32
    default_steps: int = 500
    eval_every: int = 10
    default_lr: str = "linear(peak=0.1)"
    weight_decay: float = 0.0
    clip: float | None = None

    def _load(self):
        d = _sklearn(self.name).load_breast_cancer()
        x = d.data
        tr, _ = _split(len(d.target), self.val_fraction)
        mean, std = x[tr].mean(axis=0), x[tr].std(axis=0)  # standardise with training statistics only
        return (x - mean) / std, d.target

    def model(self, size: str) -> nn.Module:
        self.check_size(size)
        return nn.Linear(30, 2)


try:
    from cadence.bench.text import Text  # noqa: E402 - it builds on TinyLM above
except ImportError:  # cadence.bench.text was imported first and is still running: it adds itself when defined
    Text = None

WORKLOADS = {w.name: w for w in (TinyLM, Text, Digits, DigitsCNN, LogReg) if w is not None}


_INSTANCES: dict = {}


def get_workload(name: str, data: "str | None" = None) -> Workload:
    """The process's one instance of a workload (per data folder): its data is read once, however often it is asked for.

    ``data``: the folder of a workload that reads one (``text``); the others take none.
    """
    if not isinstance(name, str) or name not in WORKLOADS:
        raise CadenceError(f"unknown workload {name!r}; available: {', '.join(WORKLOADS)}")
    if data is not None and not getattr(WORKLOADS[name], "takes_data", False):
        raise CadenceError(f"the {name} workload reads no data folder (only text does)", field="data")
    key = (name, data)
    if key not in _INSTANCES:
        _INSTANCES[key] = WORKLOADS[name](data_dir=data) if data is not None else WORKLOADS[name]()
    return _INSTANCES[key]


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
