"""The one list of names a spec may call: schedule families, combinators and controllers.

``register(cls)`` adds a :class:`~cadence.schedules.base.Schedule` subclass under its
``name``; a name already taken is refused unless ``replace=True`` says so. Each entry has a
kind (``family``, ``combinator`` or ``controller``), which ``cadence list`` groups by. This
module imports nothing from the rest of the schedules package except the errors, so every
other module can look names up here without an import cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cadence.errors import SpecError

if TYPE_CHECKING:  # pragma: no cover
    from cadence.schedules.base import Schedule

__all__ = ["REGISTRY", "KINDS", "register", "lookup", "kind_of", "entries"]

KINDS = ("family", "combinator", "controller")
REGISTRY: "dict[str, type[Schedule]]" = {}
_KIND: dict[str, str] = {}


def _short(value) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:55] + "..."


def register(cls: "type[Schedule]", *, kind: str | None = None, replace: bool = False) -> "type[Schedule]":
    """Make ``cls`` callable in specs as ``cls.name``; returns ``cls`` (usable as a decorator).

    ``kind`` defaults to ``controller`` for classes that keep state, else ``family``. Registering a name that exists raises SpecError
    unless ``replace=True``.
    """
    from cadence.schedules.base import Schedule  # registry is imported by base; this runs later

    if not (isinstance(cls, type) and issubclass(cls, Schedule) and isinstance(cls.name, str) and cls.name.isidentifier()):
        raise SpecError(f"register: expected a Schedule subclass whose name is an identifier; got {_short(cls)}")
    if kind is None:
        kind = "controller" if cls.stateful else "family"
    if kind not in KINDS:
        raise SpecError(f"register: kind must be one of {', '.join(KINDS)}; got {_short(kind)}", field="kind")
    if not isinstance(replace, bool):
        raise SpecError(f"register: replace must be True or False; got {_short(replace)}", field="replace")
    old = REGISTRY.get(cls.name)
    if old is not None and old is not cls and not replace:
        raise SpecError(f"register: the name {cls.name!r} is taken by {old.__module__}.{old.__qualname__}; "
                        "pass replace=True to replace it", field="replace")
    REGISTRY[cls.name] = cls
    _KIND[cls.name] = kind
    return cls


def lookup(name: str) -> "type[Schedule] | None":
    return REGISTRY.get(name)


def kind_of(name: str) -> str:
    return _KIND[name]


def entries(kind: str | None = None) -> "list[type[Schedule]]":
    """Registered classes in registration order, optionally of one kind."""
    return [cls for name, cls in REGISTRY.items() if kind is None or _KIND[name] == kind]
