"""cadence where users train: thin clients of a :class:`cadence.Plan` for other training loops.

* :mod:`cadence.integrations.hf`: ``PlanCallback`` for the transformers ``Trainer`` (extra ``[hf]``);
* :mod:`cadence.integrations.lightning`: ``PlanCallback`` for PyTorch Lightning (extra ``[lightning]``).

Each module imports its framework when it is imported itself; ``import cadence`` never does.
Every callback drives the plan through :class:`cadence.torch.Scheduler`, the same client a
hand-written loop uses, so values, skipped steps and checkpoints follow one set of rules
(docs/integrations.md).
"""
