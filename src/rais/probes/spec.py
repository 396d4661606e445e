"""What the config file says about each test object and load object.

The field names mirror the keys of ``[test.NAME]`` and ``[load.NAME]``
(see ``rais.probes.parse``); durations are in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

TestKind = Literal["tcp", "http", "command", "file"]
LoadKind = Literal["cpu", "net", "command", "static"]
TEST_KINDS: tuple[TestKind, ...] = ("tcp", "http", "command", "file")
LOAD_KINDS: tuple[LoadKind, ...] = ("cpu", "net", "command", "static")

U32_MAX = 0xFFFF_FFFF
"""Loads and capacities are unsigned 32-bit on the wire."""


@dataclass(frozen=True, slots=True)
class TestSpec:
    """A health check, run every ``interval`` s; it passes or fails.

    After the first result the state flips to failing only after ``fall``
    consecutive failures, and back to passing after ``rise`` consecutive passes.
    """

    __test__: ClassVar[bool] = False  # not a pytest test class

    name: str
    kind: TestKind
    interval: float = 2.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 2
    host: str | None = None
    """tcp: the IP address to connect to."""
    port: int | None = None
    """tcp: the port."""
    url: str | None = None
    """http: the http:// or https:// URL to GET."""
    expect_status: tuple[int, ...] = (200,)
    """http: the statuses that pass (redirects are not followed)."""
    body_contains: str | None = None
    """http: the body must contain this text (searched in its first MiB)."""
    tls_verify: bool = True
    """http: check the server's certificate (https)."""
    command: str | None = None
    """command: run with /bin/sh -c; exit status 0 passes."""
    path: str | None = None
    """file: the file looked at."""
    fail_if: Literal["exists", "missing"] = "exists"
    """file: the test fails when the file exists (a maintenance flag), or when it is missing."""


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """A load measurement, sampled every ``interval`` s as (load, capacity)."""

    name: str
    kind: LoadKind
    interval: float = 2.0
    timeout: float = 1.0
    interfaces: tuple[str, ...] = ()
    """net: the interfaces whose received and sent bytes are added up."""
    capacity: int | None = None
    """net: bytes/s (None: the sum of the links' speeds); static: the capacity."""
    command: str | None = None
    """command: run with /bin/sh -c; prints "LOAD CAPACITY", two unsigned integers."""
    load: int | None = None
    """static: the load."""
