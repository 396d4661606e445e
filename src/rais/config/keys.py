"""Config keys declared once: on the dataclass field that holds them.

A field of a config dataclass (``rais.config``) carries, in its metadata
(``metadata=key(...)``), everything else there is to say about its key:

* ``toml``: the key's name in its TOML table (the field's name by default;
  ``None`` for a field that is not a key of its own, e.g. ``port``, which
  comes with ``address``);
* ``read``: how a plain key is read from its :class:`Section` (one of the
  readers below); a key without one is read by hand in ``rais.config``,
  because it is checked against other keys;
* ``core``: how the value goes into ``rais.core.config.CoreConfig``: the
  name of the CoreConfig field it is copied into, or (field, convert) pairs.

From that come the table's known keys (:func:`toml_keys`, used for the
unknown-key check and by the test that holds docs/configuration.md to the
declaration), the plain keys' values (:func:`read_plain`) and the
CoreConfig settings (:func:`core_settings`). This module imports nothing of
rais but ``rais.base.section``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from rais.base.section import Section

Reader = Callable[[Section, str, Any], Any]
"""(section, TOML key, the field's default) -> the value."""

Convert = Callable[[Any], Any]

_META = "rais.key"


@dataclass(frozen=True, slots=True)
class Key:
    toml: str | None
    read: Reader | None
    core: tuple[tuple[str, Convert], ...]


def key(
    *,
    toml: str | bool | None = True,
    read: Reader | None = None,
    core: str | tuple[tuple[str, Convert], ...] = (),
) -> Mapping[str, Key]:
    """The metadata of a config field (``field(metadata=key(...))``):
    ``toml=True`` is the field's own name, ``toml=None`` no TOML key."""
    name = None if toml is None or toml is False else ("" if toml is True else toml)
    pairs = ((core, _same),) if isinstance(core, str) else core
    return {_META: Key(name, read, pairs)}


def _same(value: Any) -> Any:
    return value


def declared(cls: type[Any]) -> list[tuple[str, str | None, Key, Any]]:
    """(field name, TOML key or None, declaration, default) of every declared field."""
    out = []
    for f in fields(cls):
        decl = f.metadata.get(_META)
        if isinstance(decl, Key):
            toml = None if decl.toml is None else (decl.toml or f.name)
            out.append((f.name, toml, decl, f.default))
    return out


def toml_keys(cls: type[Any], *extra: str) -> tuple[str, ...]:
    """The TOML keys of the table ``cls`` holds (then ``extra``), in field order."""
    return tuple(t for _, t, _, _ in declared(cls) if t is not None) + extra


def read_plain(s: Section, cls: type[Any]) -> dict[str, Any]:
    """The values of ``cls``'s plain keys (those with a reader), by field name."""
    return {
        name: decl.read(s, toml, default)
        for name, toml, decl, default in declared(cls)
        if decl.read is not None and toml is not None
    }


def core_settings(config: object) -> dict[str, Any]:
    """The CoreConfig fields a config dataclass sets, by the declaration."""
    out: dict[str, Any] = {}
    for name, _, decl, _ in declared(type(config)):
        for target, convert in decl.core:
            out[target] = convert(getattr(config, name))
    return out


# -- readers -------------------------------------------------------------------


def string(s: Section, name: str, _default: Any) -> str:
    return s.string(name)


def opt_path(s: Section, name: str, _default: Any) -> str | None:
    return s.opt_path(name)


def boolean(s: Section, name: str, default: bool) -> bool:
    return s.boolean(name, default)


def strings(s: Section, name: str, _default: Any) -> tuple[str, ...]:
    return tuple(s.strings(name))


def duration(*, zero: bool = False) -> Reader:
    """A duration in seconds (0 allowed with ``zero``)."""

    def read(s: Section, name: str, default: float) -> float:
        return s.duration(name, default, zero=zero).seconds

    return read


def integer(lo: int, hi: int | None = None) -> Reader:
    def read(s: Section, name: str, default: int) -> int:
        return s.integer(name, default, lo, hi)

    return read


def choice(*options: str) -> Reader:
    """One of ``options``; the field's default must be the first."""

    def read(s: Section, name: str, default: str) -> str:
        assert default == options[0], (name, default)
        return s.choice(name, options)

    return read
