"""Typed readers for the config file's TOML tables (used by ``rais.config.load``).

Everything here raises ``Invalid(key, message)`` with the full dotted key;
``load`` adds the file name and turns it into a ``ConfigError``. This module
does not import ``rais.config`` (which imports it).
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rais.base.durations import parse_duration
from rais.base.ip import IP, Interface


class Invalid(Exception):
    """A bad value at ``key`` (the file is added by the caller)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def toml_type(value: object) -> str:
    """The TOML name of a parsed value's type, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


def show(value: object) -> str:
    """A short TOML-like rendering of a parsed value, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{...}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True, slots=True)
class Duration:
    seconds: float
    shown: str
    """As written in the file, for messages."""


def family(ip: IP) -> str:
    return f"IPv{ip.version}"


def parse_ip(text: str) -> IP:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"not an IP address: {text!r}") from None


def parse_endpoint(text: str) -> tuple[IP, int]:
    """ "192.0.2.1:7401" or "[2001:db8::1]:7401" (IPv6 in brackets)."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected [IPv6]:port, got {text!r}")
        ip = parse_ip(host)
        if ip.version != 6:
            raise ValueError(f"only IPv6 addresses go in brackets, got {text!r}")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"expected address:port, got {text!r}")
        if ":" in host:
            raise ValueError(f"write an IPv6 address in brackets, e.g. [{host}]:{port}")
        ip = parse_ip(host)
    if not (port.isascii() and port.isdigit()):
        raise ValueError(f"port is not a number in {text!r}")
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port must be 1..65535, got {int(port)} in {text!r}")
    return ip, int(port)


def show_endpoint(ip: IP, port: int) -> str:
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def parse_interface(text: str) -> Interface:
    """An address with its prefix, e.g. "192.0.2.101/24"; the prefix is required."""
    if "/" not in text:
        parse_ip(text)  # a malformed address is reported as such
        example = "/24" if "." in text else "/64"
        raise ValueError(f"{text!r} has no prefix length: add one, e.g. {text}{example}")
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise ValueError(f"not an address with prefix: {text!r}") from None
    ip, net = iface.ip, iface.network
    if ip.is_unspecified or ip.is_multicast:
        raise ValueError(f"{text!r} cannot be a service address")
    if (
        ip.version == 4
        and net.prefixlen < 31
        and ip in (net.network_address, net.broadcast_address)
    ):
        raise ValueError(f"{text!r} is the network or broadcast address of {net}")
    return iface


class Section:
    """One TOML table under a dotted key prefix; unknown keys are refused up front.

    Each getter returns the value (or the default when the key is absent) and
    raises ``Invalid`` naming the full key when the value is wrong.
    """

    def __init__(self, data: dict[str, Any], prefix: str, known: Iterable[str], base: str) -> None:
        self.data = data
        self.prefix = prefix
        self.base = base
        """The config file's directory: relative paths are taken from there."""
        known = list(known)
        for name in data:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(known)
                raise Invalid(self.key(name), f"unknown key ({hint})")

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def has(self, name: str) -> bool:
        return name in self.data

    def fail(self, name: str, message: str) -> Invalid:
        return Invalid(self.key(name), message)

    def _get(self, name: str, kind: type | tuple[type, ...], what: str) -> Any:
        value = self.data[name]
        # bool is an int subclass: never accept one as a number.
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise self.fail(name, f"must be {what}, got {toml_type(value)}: {show(value)}")
        return value

    def table(self, name: str) -> dict[str, Any]:
        if name not in self.data:
            raise self.fail(name, f"missing: add the [{self.key(name)}] section")
        table: dict[str, Any] = self._get(name, dict, f"a table ([{self.key(name)}])")
        return table

    def opt_table(self, name: str) -> dict[str, Any]:
        """A table that may be absent (then empty)."""
        return self.table(name) if name in self.data else {}

    def tables(self, name: str) -> list[dict[str, Any]]:
        """An array of tables, ``[[name]]`` (absent: empty)."""
        if name not in self.data:
            return []
        items: list[object] = self._get(name, list, f"an array of tables ([[{self.key(name)}]])")
        out: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise Invalid(f"{self.key(name)}[{i}]", f"must be a table, got {toml_type(item)}")
            out.append(item)
        return out

    def string(self, name: str) -> str:
        """A required non-empty string."""
        if name not in self.data:
            raise self.fail(name, "missing")
        value: str = self._get(name, str, "a string")
        if not value.strip():
            raise self.fail(name, "must not be empty")
        return value

    def opt_string(self, name: str, default: str | None = None) -> str | None:
        return self.string(name) if name in self.data else default

    def choice(self, name: str, options: tuple[str, ...]) -> str:
        """One of ``options``, as a string (absent: the first, the default)."""
        value = self.opt_string(name, options[0])
        if value not in options:
            shown = [f'"{o}"' for o in options]
            listed = ", ".join(shown[:-1]) + " or " + shown[-1] if len(shown) > 1 else shown[0]
            raise self.fail(name, f"must be {listed}, got {value!r}")
        assert value is not None
        return value

    def path(self, name: str) -> str:
        """A required path; relative paths are taken from the config file's directory."""
        return os.path.join(self.base, self.string(name))

    def opt_path(self, name: str) -> str | None:
        return self.path(name) if name in self.data else None

    def boolean(self, name: str, default: bool) -> bool:
        if name not in self.data:
            return default
        value: bool = self._get(name, bool, "true or false")
        return value

    def integer(self, name: str, default: int, lo: int, hi: int | None = None) -> int:
        if name not in self.data:
            return default
        value: int = self._get(name, int, "an integer")
        if value < lo or (hi is not None and value > hi):
            bound = f"{lo}..{hi}" if hi is not None else f"at least {lo}"
            raise self.fail(name, f"must be {bound}, got {value}")
        return value

    def duration(self, name: str, default: float, *, zero: bool = False) -> Duration:
        """A positive duration: "100ms", "2s", "5m", "1h", "1d", or a number of
        seconds (0 allowed too with ``zero``)."""
        if name not in self.data:
            return Duration(default, f"the default {default:g}s")
        value = self._get(name, (str, int, float), 'a duration such as "100ms" or "2s"')
        if isinstance(value, str):
            try:
                seconds = parse_duration(value)
            except ValueError as exc:
                raise self.fail(name, str(exc)) from None
            shown = value.strip()
        else:
            seconds = float(value)
            shown = f"{value:g}s" if math.isfinite(seconds) else str(value)
        if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero):
            raise self.fail(name, f"must be a positive duration, got {shown}")
        return Duration(seconds, shown)

    def strings(self, name: str) -> list[str]:
        """An array of strings (absent: empty)."""
        if name not in self.data:
            return []
        items: list[object] = self._get(name, list, "an array of strings")
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise Invalid(
                    f"{self.key(name)}[{i}]",
                    f"must be a string, got {toml_type(item)}: {show(item)}",
                )
        return [str(item) for item in items]

    def addresses(self, name: str) -> tuple[IP, ...]:
        """An array of unicast IP addresses without duplicates (absent: empty)."""
        out: list[IP] = []
        for i, text in enumerate(self.strings(name)):
            key = f"{self.key(name)}[{i}]"
            try:
                ip = parse_ip(text)
            except ValueError as exc:
                raise Invalid(key, str(exc)) from None
            if ip.is_multicast or ip.is_unspecified:
                raise Invalid(key, f"{ip} is not a unicast address")
            if ip in out:
                raise Invalid(key, f"{ip} is listed twice")
            out.append(ip)
        return tuple(out)

    def endpoint(self, name: str) -> tuple[IP, int]:
        try:
            return parse_endpoint(self.string(name))
        except ValueError as exc:
            raise self.fail(name, str(exc)) from None

    def interface(self, name: str) -> Interface | None:
        if name not in self.data:
            return None
        try:
            return parse_interface(self.string(name))
        except ValueError as exc:
            raise self.fail(name, str(exc)) from None

    def key_file(self, name: str) -> bytes:
        """The key in the file named at ``name``, surrounding whitespace stripped."""
        path = self.path(name)
        try:
            with open(path, "rb") as f:
                key = f.read().strip()
        except OSError as exc:
            raise self.fail(name, f"cannot read {path}: {exc.strerror or exc}") from None
        if not key:
            raise self.fail(name, f"{path} is empty")
        return key
