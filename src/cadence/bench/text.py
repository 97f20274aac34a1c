"""The ``text`` workload: tiny-lm's byte-level model on a corpus of domains, drawn by a mixture.

A data folder's immediate subfolders are the domains; every text file below one belongs to
it (binary files, those with a NUL byte, and files that are not UTF-8 are skipped and
counted). Without a folder the workload builds three domains from the running Python's
standard library: ``code`` (modules outside test folders), ``tests`` (the ``test``
package) and ``prose`` (the help topics of ``pydoc_data.topics``), each read up to a fixed
byte budget so start-up takes a few seconds.

Each file goes to validation or training by a stable hash of its relative path, as in
tiny-lm; a domain with too few files for that keeps the last tenth of every file for
validation. Every sample of micro-batch ``i`` picks its domain with probability given by the
mixture weights (the plan's ``mixture`` channel at that step; uniform without one) and then a
window of that domain, all from a generator seeded by (seed, i): since the weights are a
function of the clock and the recorded controller state, a resumed run draws the same batches.
A ``curriculum`` channel narrows where windows start to the easiest part of each domain (its
training files sorted by difficulty, :meth:`Text.ordered`), or to a difficulty bucket.
"""

from __future__ import annotations

import hashlib
import math
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from cadence.bench import workloads as _w
from cadence.errors import CadenceError
from cadence.time import Rates

__all__ = ["Text", "DEFAULT_BUDGET"]

#: Bytes read per domain of the default corpus (files taken in an order fixed by a hash of their path).
DEFAULT_BUDGET = 1_000_000


def _bucket(rel: str) -> float:
    """A file's place in [0, 1) from its relative path alone (tiny-lm's split)."""
    return int.from_bytes(hashlib.sha256(rel.encode()).digest()[:4], "little") / 2**32


def _is_text(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@dataclass
class Text(_w.TinyLM):
    name: str = "text"
    description: str = ("tiny-lm's model on a corpus of domains (a data folder's subfolders; default: the standard "
                        "library's code, its tests, and Python's help topics), batches drawn by a mixture over domains")
    default_steps: int = 1000
    eval_every: int = 50
    val_fraction: float = 0.1
    val_batches: int = 4  # per domain, of 32 windows each
    data_dir: "str | None" = None
    budget: int = DEFAULT_BUDGET
    takes_data = True  # get_workload(name, data=...): the one workload that reads a folder

    # -- reading ----------------------------------------------------------------------------

    def _corpus(self):
        if "train" not in self._data:
            from cadence.bench.logs import DataProgress

            where = self.data_dir or "the Python standard library (code, tests, prose)"
            shown = DataProgress(_w._DATA_PROGRESS.get(), self.name, f"the domains of {where}")
            try:
                domains = self._read_folder(Path(self.data_dir)) if self.data_dir is not None else self._read_default()
                self._build(domains)
            except BaseException:
                shown.close(ok=False)
                raise
            shown.update(sum(r["files"] for r in self._data["record"].values()),
                         sum(r["bytes"] for r in self._data["record"].values()))
            shown.close()
            if shown.mode is not None:  # the one line about what was read (silent when progress is off)
                print(f"{self.name}: {len(domains)} domains ({', '.join(domains)}); {self._data['skipped']} "
                      "file(s) skipped (binary or not UTF-8)", file=sys.stderr, flush=True)
        return self._data["train"], self._data["val"]

    def _read_folder(self, root: Path) -> dict:
        """{domain: [(relative path, bytes)]} of a data folder; skipped files counted in self._data."""
        if not root.exists():
            raise CadenceError(f"data folder {root} does not exist", field="data")
        if not root.is_dir():
            raise CadenceError(f"data {root} is not a folder", field="data")
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not names:
            raise CadenceError(f"data folder {root} has no subfolders (each subfolder is a domain)", field="data")
        domains, skipped = {}, 0
        for name in names:
            files, bad = [], 0
            for path in sorted(p for p in (root / name).rglob("*") if p.is_file()):
                try:
                    data = path.read_bytes()
                except OSError:
                    bad += 1
                    continue
                if not _is_text(data):
                    bad += 1
                    continue
                files.append((path.relative_to(root).as_posix(), data))
            if not any(data for _, data in files):
                raise CadenceError(f"domain {name!r} of data folder {root} has no readable text ({len(files)} empty "
                                   f"file(s), {bad} skipped: binary or not UTF-8)", field="data")
            domains[name] = files
            skipped += bad
        self._data["skipped"] = skipped
        return domains

    def _read_default(self) -> dict:
        """Three domains from the standard library, each up to ``budget`` bytes (files in a fixed hashed order)."""
        root = Path(sysconfig.get_paths()["stdlib"])
        code, tests = [], []
        for path in root.rglob("*.py"):
            rel = path.relative_to(root)
            if "site-packages" in rel.parts:
                continue
            if rel.parts[0] == "test":
                tests.append(path)
            elif not any(part in ("test", "tests", "idle_test") for part in rel.parts):
                code.append(path)
        domains, skipped = {}, 0
        for name, paths in (("code", code), ("tests", tests)):
            files, size = [], 0
            for path in sorted(paths, key=lambda p: hashlib.sha256(p.relative_to(root).as_posix().encode()).digest()):
                if size >= self.budget:
                    break
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                if not _is_text(data):
                    skipped += 1
                    continue
                files.append((f"{name}/{path.relative_to(root).as_posix()}", data))
                size += len(data)
            domains[name] = files
        try:
            from pydoc_data.topics import topics
        except ImportError:
            topics = {}
        files, size = [], 0
        for key in sorted(topics, key=lambda k: hashlib.sha256(k.encode()).digest()):
            if size >= self.budget:
                break
            data = topics[key].encode("utf-8")
            files.append((f"prose/{key}", data))
            size += len(data)
        domains["prose"] = files
        for name, files in domains.items():
            if not any(data for _, data in files):
                raise CadenceError(f"the default text corpus: this Python has no {name} to read under {root}",
                                   field="data")
        self._data["skipped"] = skipped
        return domains

    def _build(self, domains: dict) -> None:
        """Split each domain, pack the training text into one tensor with offsets, and fingerprint it."""
        need = self.context + 2
        train, val, record, pieces = [], [], {}, {}
        for name, files in domains.items():
            tr = [d for rel, d in files if _bucket(rel) >= self.val_fraction]
            va = [d for rel, d in files if _bucket(rel) < self.val_fraction]
            tr_bytes, va_bytes = b"".join(tr), b"".join(va)
            pieces[name] = [(rel, d) for rel, d in files if _bucket(rel) >= self.val_fraction and d]
            if len(tr_bytes) < need or len(va_bytes) < need:  # too few files to split by file: split each file
                cuts = [(rel, d, int(len(d) * (1 - self.val_fraction))) for rel, d in files]
                tr_bytes = b"".join(d[:c] for _, d, c in cuts)
                va_bytes = b"".join(d[c:] for _, d, c in cuts)
                pieces[name] = [(rel, d[:c]) for rel, d, c in cuts if c]  # each file keeps its name (and score)
            if len(tr_bytes) < need or len(va_bytes) < need:
                raise CadenceError(f"domain {name!r} has too little text ({len(tr_bytes) + len(va_bytes)} bytes; at "
                                   f"least {int(need / self.val_fraction) + 1} are needed)", field="data")
            train.append(torch.frombuffer(bytearray(tr_bytes), dtype=torch.uint8).long())
            val.append(torch.frombuffer(bytearray(va_bytes), dtype=torch.uint8).long())
            listing = hashlib.sha256()
            for rel, data in sorted(files):
                listing.update(f"{rel}\0{len(data)}\0{hashlib.blake2b(data, digest_size=16).hexdigest()}\n".encode())
            record[name] = {"files": len(files), "bytes": sum(len(d) for _, d in files),
                            "hash": listing.hexdigest()[:16]}
        lengths = torch.tensor([len(t) for t in train])
        self._data["domains"] = tuple(domains)
        self._data["train"] = torch.cat(train)
        self._data["offsets"] = torch.cumsum(lengths, 0) - lengths
        self._data["lengths"] = lengths
        self._data["val"] = val
        self._data["record"] = record
        self._data["pieces"] = pieces  # the training files of each domain, in the packed order (for a curriculum)
        whole = hashlib.sha256(repr(sorted(record.items())).encode())
        self._data["fingerprint"] = whole.hexdigest()[:16]

    # -- what the runner asks -----------------------------------------------------------------

    def domain_names(self) -> tuple[str, ...]:
        self._corpus()
        return self._data["domains"]

    def metric_names(self) -> tuple[str, ...]:
        return ("val_loss", *(f"val_loss/{d}" for d in self.domain_names()))

    def corpus_record(self) -> dict:
        self._corpus()
        return {name: dict(r) for name, r in self._data["record"].items()}

    def data_changes(self, recorded) -> str:
        mine = self.corpus_record()
        if not isinstance(recorded, dict):
            return "its corpus fingerprint differs (the run recorded no per-domain record)"
        parts = [f"domain {d!r} removed" for d in recorded if d not in mine]
        parts += [f"domain {d!r} added" for d in mine if d not in recorded]
        for d in mine:
            old = recorded.get(d)
            if not isinstance(old, dict) or old == mine[d]:
                continue
            new = mine[d]
            if (old.get("files"), old.get("bytes")) != (new["files"], new["bytes"]):
                parts.append(f"domain {d!r}: {old.get('files')} files, {old.get('bytes')} bytes in the run; "
                             f"{new['files']} files, {new['bytes']} bytes now")
            else:
                parts.append(f"domain {d!r}: the same file count and size, other names or content")
        return "; ".join(parts) or "its corpus fingerprint differs"

    def rates(self, batch_size: int) -> Rates:
        train, _ = self._corpus()
        return Rates(samples_per_step=batch_size, tokens_per_sample=self.context,
                     steps_per_epoch=len(train) / (batch_size * self.context))

    def weights(self, mixture=None) -> torch.Tensor:
        """The sampling weight of each domain, normalised: uniform when ``mixture`` is None, else
        ``mixture`` ({domain: weight >= 0}, the mixture channel's value)."""
        names = self.domain_names()
        if mixture is None:
            return torch.full((len(names),), 1.0 / len(names), dtype=torch.float64)
        unknown = sorted(set(mixture) - set(names))
        missing = [d for d in names if d not in mixture]
        if unknown or missing:
            raise CadenceError(f"mixture weights name {', '.join(map(repr, unknown)) or 'no unknown domain'} and miss "
                               f"{', '.join(map(repr, missing)) or 'none'}; the domains: {', '.join(names)}",
                               field="mixture")
        values = [mixture[d] for d in names]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                   for v in values) or sum(values) <= 0:
            raise CadenceError(f"mixture weights must be finite numbers >= 0, not all zero; got {values}",
                               field="mixture")
        w = torch.tensor([float(v) for v in values], dtype=torch.float64)
        return w / w.sum()

    def draw(self, seed: int, i: int, size: int, weights: "torch.Tensor | None" = None):
        """(domain of each sample, a uniform number in [0, 1) per sample) of micro-batch ``i``."""
        from cadence.torch.data import draw_domains  # the one drawing function of the runner and cadence.torch

        return draw_domains(self.weights() if weights is None else weights, seed, i, size)

    def domain_counts(self, seed: int, first: int, count: int, size: int, weights=None) -> list[int]:
        """Samples drawn from each domain by micro-batches ``first .. first + count - 1``."""
        total = torch.zeros(len(self.domain_names()), dtype=torch.long)
        for i in range(first, first + count):
            total += torch.bincount(self.draw(seed, i, size, weights)[0], minlength=len(total))
        return total.tolist()

    def batch(self, seed: int, step: int, batch_size: int, weights=None, curriculum=None):
        """(inputs, targets, domain of each sample) of micro-batch ``step``, drawn under ``weights``.

        ``curriculum``: None, or ``(order, competence)``: each domain's training text sorted easiest
        first (:meth:`ordered`) and the fraction of it, from the easiest, that windows are drawn from;
        or ``(order, bucket weights)`` (a tensor, one weight per difficulty bucket): each sample draws
        a bucket (a quantile of its domain's sorted text), then a window in it. A bucket curriculum
        adds the bucket of each sample as a fourth element.
        """
        train, _ = self._corpus()
        domains, u = self.draw(seed, step, batch_size, weights)
        if curriculum is None:
            room = self._data["lengths"][domains] - self.context - 1
            starts = self._data["offsets"][domains] + (u * room).long()
            return (*self._windows(train, starts), domains)
        order, how = curriculum
        lengths = order["lengths"][domains]
        if isinstance(how, torch.Tensor):  # a bandit's weight per bucket
            g = _w.step_generator(seed, step, stream=2)
            buckets = torch.multinomial(how, batch_size, replacement=True, generator=g)
            k = len(how)
            lo = (lengths * buckets) // k
            hi = torch.maximum((lengths * (buckets + 1)) // k, lo + self.context + 2)
            first = torch.minimum(lo, lengths - self.context - 2)
            span = torch.minimum(hi, lengths) - first - self.context - 1
            starts = order["offsets"][domains] + first + (u * span.clamp(min=1)).long()
            return (*self._windows(order["text"], starts), domains, buckets)
        c = min(max(float(how), 0.0), 1.0)  # the competence: the easiest fraction c of each domain
        room = torch.maximum(torch.ceil(lengths * c).long(), torch.full_like(lengths, self.context + 2)).minimum(lengths)
        starts = order["offsets"][domains] + (u * (room - self.context - 1)).long()
        return (*self._windows(order["text"], starts), domains)

    def ordered(self, scores: "dict[str, float]") -> dict:
        """Each domain's training files sorted by ``scores`` ({relative path: difficulty}, lower is easier; ties
        by path) and packed as the training text is: ``text``, ``offsets``, ``lengths`` per domain."""
        self._corpus()
        parts, lengths = [], []
        for name in self.domain_names():
            pieces = sorted(self._data["pieces"][name], key=lambda p: (scores[p[0]], p[0]))
            data = b"".join(d for _, d in pieces)
            parts.append(torch.frombuffer(bytearray(data), dtype=torch.uint8).long())
            lengths.append(len(data))
        lengths = torch.tensor(lengths)
        return {"text": torch.cat(parts), "offsets": torch.cumsum(lengths, 0) - lengths, "lengths": lengths}

    def pieces(self) -> "dict[str, list[tuple[str, bytes]]]":
        """The training files of each domain: (path relative to the data folder, bytes)."""
        self._corpus()
        return self._data["pieces"]

    def loss(self, model, batch):
        return self.per_sample(model, batch)[""].mean()

    def losses(self, model, batch):
        parts = self.per_sample(model, batch, terms=("z",))
        return {"": parts[""].mean(), "z": parts["z"]}

    #: held-out windows per domain of the probe a mixing controller may ask for (``probe_loss/<domain>``)
    probe_windows: int = 16

    def probe(self, model) -> dict[str, float]:
        """The loss on a small fixed held-out probe of each domain (other windows than evaluate()'s)."""
        _, val = self._corpus()
        if "probe" not in self._data:
            windows = []
            for k, text in enumerate(val):
                g = torch.Generator().manual_seed(54321 + k)
                windows.append(self._windows(text, torch.randint(0, len(text) - self.context - 1,
                                                                 (self.probe_windows,), generator=g)))
            self._data["probe"] = windows
        device = next(model.parameters()).device
        with torch.no_grad():
            return {f"probe_loss/{name}": float(F.cross_entropy(model(x.to(device)).reshape(-1, 256),
                                                                y.to(device).reshape(-1)))
                    for name, (x, y) in zip(self.domain_names(), self._data["probe"])}

    def evaluate(self, model) -> dict[str, float]:
        _, val = self._corpus()
        if "val_batches" not in self._data:  # the same held-out windows per domain for every run and seed
            batches = []
            for k, text in enumerate(val):
                g = torch.Generator().manual_seed(12345 + k)
                starts = torch.randint(0, len(text) - self.context - 1, (self.val_batches, 32), generator=g)
                batches.append([self._windows(text, s) for s in starts])
            self._data["val_batches"] = batches
        device = next(model.parameters()).device
        out = {}
        with torch.no_grad():
            for name, batches in zip(self.domain_names(), self._data["val_batches"]):
                out[f"val_loss/{name}"] = sum(float(F.cross_entropy(model(x.to(device)).reshape(-1, 256),
                                                                    y.to(device).reshape(-1)))
                                              for x, y in batches) / len(batches)
        return {"val_loss": sum(out.values()) / len(out), **out}


if "text" not in getattr(_w, "WORKLOADS", {"text": None}):  # imported before cadence.bench.workloads: join its registry
    _order = list(_w.WORKLOADS.items())
    _w.WORKLOADS.clear()
    _w.WORKLOADS.update([_order[0], (Text.name, Text), *_order[1:]])
    _w.Text = Text
