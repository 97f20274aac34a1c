"""Controllers: values with explicit state that observe the run (docs/plans.md).

A controller is ``init() -> state``, ``update(state, clock, signals) -> state`` and
``value(state, clock)``; state is plain, JSON-safe data; randomness, if any, would come
from (seed, clock). A plain schedule is a controller without state. Controllers are
written in the same spec language as schedules and may wrap them:
``plateau(warmup(cosine(peak=1e-3), 200), patience=5)`` is one expression.

* ``plateau``: torch's reduce-on-plateau rule over any schedule.
* ``noise_batch``: the batch size grown towards the measured gradient noise scale.
* ``scale_with``: a schedule scaled by another channel (the square-root LR rule).
* ``mix``: the ``mixture`` channel's weight per domain, each a number or a schedule.
* ``odm``, ``doremi``, ``aioli``: online data mixing (docs/data.md): a bandit over domains,
  group reweighting against a reference run, a linear mixing law re-estimated in rounds.
* ``pace`` (a family), ``sec``, ``dump``: the ``curriculum`` channel: how much of the data,
  easiest first, a step may draw from, or a bandit over difficulty buckets.
* ``reweight`` (a family): the ``sample_weights`` channel, per-sample loss weights.

Building blocks: :class:`PlateauRule` and :func:`noise_scale` / :class:`NoiseScale`.
"""

from cadence.controllers.base import Controller
from cadence.controllers.batch import NOISE_SIGNALS, NoiseBatch, ScaleWith
from cadence.controllers.noise import NoiseScale, noise_scale
from cadence.controllers.plateau import Plateau
from cadence.controllers.plateau_rule import PlateauRule
from cadence.controllers.base import VectorController
from cadence.controllers.mixture import Mix
from cadence.controllers.mixing import MIXERS, ODM, Aioli, DoReMi
from cadence.controllers.curriculum import CURRICULA, DUMP, SEC, Pace
from cadence.controllers.reweight import REWEIGHTS, Reweight
from cadence.schedules.registry import register

CONTROLLERS = (Plateau, NoiseBatch, ScaleWith, Mix, *MIXERS)
for _cls in CONTROLLERS:
    register(_cls, kind="controller")
for _cls in (SEC, DUMP):
    register(_cls, kind="controller")
for _cls in (Pace, *REWEIGHTS):  # pure functions of the clock: families of the data channels
    register(_cls, kind="family")

plateau, noise_batch, scale_with, mix = Plateau, NoiseBatch, ScaleWith, Mix
odm, doremi, aioli = ODM, DoReMi, Aioli
pace, sec, dump, reweight = Pace, SEC, DUMP, Reweight

__all__ = ["Controller", "VectorController", "Mix", "mix", "ODM", "DoReMi", "Aioli", "odm", "doremi", "aioli", "Pace", "SEC", "DUMP",
           "Reweight", "pace", "sec", "dump", "reweight", "CURRICULA", "REWEIGHTS", "Plateau", "NoiseBatch", "ScaleWith", "CONTROLLERS", "NOISE_SIGNALS", "NoiseScale",
           "noise_scale", "PlateauRule", "plateau", "noise_batch", "scale_with"]
