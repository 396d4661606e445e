"""Readers for the ``[test.NAME]`` and ``[load.NAME]`` tables of the config file.

``parse_tests(data, base)`` takes the parsed ``test`` table (``{NAME: {key:
value}}``) and ``parse_loads`` the ``load`` table; both raise
``Invalid(key, message)`` with the dotted key (``test.web.url``,
``load.cpu.interval``), like ``rais.base.section``.

Keys of every test: ``kind`` (required), ``interval`` ("2s"), ``timeout``
(1 s, or ``interval`` if that is shorter; never above ``interval``), ``rise``
(2) and ``fall`` (2). Per kind:

- ``tcp``: ``host`` (an IP address) and ``port``, both required.
- ``http``: ``url`` (required, http:// or https://), ``expect_status``
  ([200]), ``body_contains``, ``tls_verify`` (true).
- ``command``: ``command`` (required, run with /bin/sh -c).
- ``file``: ``path`` (required; relative to the config file's directory)
  and ``fail_if`` ("exists" or "missing"; default "exists").

Keys of every load: ``kind`` (required), ``interval`` ("2s"), ``timeout``.
Per kind: ``cpu`` nothing more; ``net``: ``interfaces`` (required, not empty)
and ``capacity`` (bytes/s; default the links' speeds); ``command``:
``command`` (required; prints "LOAD CAPACITY"); ``static``: ``load`` and
``capacity`` (both required).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from rais.base.section import Invalid, Section, parse_ip, show, toml_type
from rais.probes.spec import LOAD_KINDS, TEST_KINDS, U32_MAX, LoadSpec, TestSpec

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""Test and load names: the same rule as group names."""
_IFNAME = re.compile(r"[^/\s:]{1,15}")
"""A Linux interface name (IFNAMSIZ - 1 bytes, no '/', ':' or whitespace)."""

_TEST_COMMON = ("kind", "interval", "timeout", "rise", "fall")
_TEST_KEYS: dict[str, tuple[str, ...]] = {
    "tcp": ("host", "port"),
    "http": ("url", "expect_status", "body_contains", "tls_verify"),
    "command": ("command",),
    "file": ("path", "fail_if"),
}
_TEST_REQUIRED: dict[str, tuple[str, ...]] = {
    "tcp": ("host", "port"),
    "http": ("url",),
    "command": ("command",),
    "file": ("path",),
}

_LOAD_COMMON = ("kind", "interval", "timeout")
_LOAD_KEYS: dict[str, tuple[str, ...]] = {
    "cpu": (),
    "net": ("interfaces", "capacity"),
    "command": ("command",),
    "static": ("load", "capacity"),
}
_LOAD_REQUIRED: dict[str, tuple[str, ...]] = {
    "cpu": (),
    "net": ("interfaces",),
    "command": ("command",),
    "static": ("load", "capacity"),
}

T = TypeVar("T")


def _all_keys(common: tuple[str, ...], per_kind: dict[str, tuple[str, ...]]) -> list[str]:
    out = list(common)
    for keys in per_kind.values():
        out += [k for k in keys if k not in out]
    return out


def _objects(
    data: object, what: Literal["test", "load"], parse_one: Callable[[str, dict[str, Any]], T]
) -> dict[str, T]:
    if not isinstance(data, dict):
        raise Invalid(what, f"must be a table of [{what}.NAME] tables, got {toml_type(data)}")
    out: dict[str, T] = {}
    for name, table in data.items():
        if not NAME.fullmatch(name):
            raise Invalid(
                what,
                f"{what} name {name!r} must be 1-64 letters, digits, '_' or '-' (not first)",
            )
        if not isinstance(table, dict):
            raise Invalid(
                f"{what}.{name}",
                f"must be a table ([{what}.{name}]), got {toml_type(table)}: {show(table)}",
            )
        out[name] = parse_one(name, table)
    return out


def _kind(s: Section, kinds: tuple[str, ...], what: str) -> str:
    choices = ", ".join(kinds)
    if not s.has("kind"):
        raise s.fail("kind", f"missing: the kind of {what}, one of {choices}")
    kind = s.string("kind")
    if kind not in kinds:
        raise s.fail("kind", f"must be one of {choices}, got {kind!r}")
    return kind


def _keys_for_kind(
    s: Section,
    kind: str,
    what: str,
    common: tuple[str, ...],
    own: tuple[str, ...],
    required: tuple[str, ...],
) -> None:
    """Refuses keys of other kinds and reports the first missing required key."""
    for key in s.data:
        if key not in common and key not in own:
            takes = f"its own keys are {', '.join(own)}" if own else "it has no keys of its own"
            raise s.fail(key, f"not a key of a {kind} {what} ({takes})")
    for key in required:
        if not s.has(key):
            raise s.fail(key, f"missing: a {kind} {what} needs {key}")


def _timing(s: Section) -> tuple[float, float]:
    interval = s.duration("interval", 2.0)
    timeout = s.duration("timeout", min(1.0, interval.seconds))
    if timeout.seconds > interval.seconds:
        raise s.fail(
            "timeout", f"must not be above interval ({interval.shown}), got {timeout.shown}"
        )
    return interval.seconds, timeout.seconds


def _required_int(s: Section, name: str, lo: int, hi: int) -> int:
    if not s.has(name):
        raise s.fail(name, "missing")
    return s.integer(name, lo, lo, hi)


def _url(s: Section) -> str:
    url = s.string("url")
    if any(c.isspace() for c in url):
        raise s.fail("url", f"must not contain whitespace, got {url!r}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise s.fail("url", f"not a valid URL: {url!r} ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise s.fail("url", f"must start with http:// or https://, got {url!r}")
    if not parts.hostname:
        raise s.fail("url", f"has no host: {url!r}")
    return url


def _statuses(s: Section) -> tuple[int, ...]:
    if not s.has("expect_status"):
        return (200,)
    items = s.data["expect_status"]
    if not isinstance(items, list):
        raise s.fail(
            "expect_status",
            f"must be an array of HTTP status codes, e.g. [200, 204], got "
            f"{toml_type(items)}: {show(items)}",
        )
    if not items:
        raise s.fail("expect_status", "must list at least one status code")
    out: list[int] = []
    for i, item in enumerate(items):
        key = f"{s.key('expect_status')}[{i}]"
        if not isinstance(item, int) or isinstance(item, bool):
            raise Invalid(key, f"must be an integer, got {toml_type(item)}: {show(item)}")
        if not 100 <= item <= 599:
            raise Invalid(key, f"must be an HTTP status code 100..599, got {item}")
        if item in out:
            raise Invalid(key, f"{item} is listed twice")
        out.append(item)
    return tuple(out)


def _test(name: str, table: dict[str, Any], base: str) -> TestSpec:
    s = Section(table, f"test.{name}", _all_keys(_TEST_COMMON, _TEST_KEYS), base)
    kind = _kind(s, TEST_KINDS, "test")
    _keys_for_kind(s, kind, "test", _TEST_COMMON, _TEST_KEYS[kind], _TEST_REQUIRED[kind])
    interval, timeout = _timing(s)
    common: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "interval": interval,
        "timeout": timeout,
        "rise": s.integer("rise", 2, 1, U32_MAX),
        "fall": s.integer("fall", 2, 1, U32_MAX),
    }
    if kind == "tcp":
        try:
            host = str(parse_ip(s.string("host")))
        except ValueError as exc:
            raise s.fail("host", str(exc)) from None
        return TestSpec(**common, host=host, port=_required_int(s, "port", 1, 65535))
    if kind == "http":
        return TestSpec(
            **common,
            url=_url(s),
            expect_status=_statuses(s),
            body_contains=s.opt_string("body_contains"),
            tls_verify=s.boolean("tls_verify", True),
        )
    if kind == "command":
        return TestSpec(**common, command=s.string("command"))
    fail_if: Literal["exists", "missing"] = "exists"
    text = s.opt_string("fail_if")
    if text == "missing":
        fail_if = "missing"
    elif text not in (None, "exists"):
        raise s.fail("fail_if", f'must be "exists" or "missing", got {text!r}')
    return TestSpec(**common, path=s.path("path"), fail_if=fail_if)


def _interfaces(s: Section) -> tuple[str, ...]:
    names = s.strings("interfaces")
    if not names:
        raise s.fail("interfaces", 'must list at least one interface, e.g. ["eth0"]')
    for i, ifname in enumerate(names):
        key = f"{s.key('interfaces')}[{i}]"
        if not _IFNAME.fullmatch(ifname) or ifname in (".", ".."):
            raise Invalid(key, f"not an interface name: {ifname!r}")
        if ifname in names[:i]:
            raise Invalid(key, f"{ifname} is listed twice")
    return tuple(names)


def _load(name: str, table: dict[str, Any], base: str) -> LoadSpec:
    s = Section(table, f"load.{name}", _all_keys(_LOAD_COMMON, _LOAD_KEYS), base)
    kind = _kind(s, LOAD_KINDS, "load")
    _keys_for_kind(s, kind, "load", _LOAD_COMMON, _LOAD_KEYS[kind], _LOAD_REQUIRED[kind])
    interval, timeout = _timing(s)
    common: dict[str, Any] = {"name": name, "kind": kind, "interval": interval, "timeout": timeout}
    if kind == "net":
        capacity = s.integer("capacity", 1, 1, U32_MAX) if s.has("capacity") else None
        return LoadSpec(**common, interfaces=_interfaces(s), capacity=capacity)
    if kind == "command":
        return LoadSpec(**common, command=s.string("command"))
    if kind == "static":
        return LoadSpec(
            **common,
            load=_required_int(s, "load", 0, U32_MAX),
            capacity=_required_int(s, "capacity", 1, U32_MAX),
        )
    return LoadSpec(**common)


def parse_tests(data: dict[str, Any], base: str) -> dict[str, TestSpec]:
    """The ``test`` table: ``{NAME: TestSpec}`` in file order; raises ``Invalid``."""
    return _objects(data, "test", lambda name, table: _test(name, table, base))


def parse_loads(data: dict[str, Any], base: str) -> dict[str, LoadSpec]:
    """The ``load`` table: ``{NAME: LoadSpec}`` in file order; raises ``Invalid``."""
    return _objects(data, "load", lambda name, table: _load(name, table, base))
