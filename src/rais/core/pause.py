"""Restarting an agent in place (``rais pause``, beyond the patent; docs/protocol.md,
"Restarting in place").

The pausing host announces, in every info, how many milliseconds are left of
its pause (``HostEntry.pause_ms``); each receiver counts that from the arrival
of the info on its own clock (rais.core.membership). While the window lasts the
host keeps its addresses: it stays live when it falls silent, the leader gives
it nothing and touches none of its addresses (rais.core.control), and it
cannot lead (rais.core.hosts). Past the window a silent host is lost, exactly
as if it had gone silent without a pause. Its new process starts holding the
addresses (``resume``), announces no pause, and the group sees it come back
with everything served: nothing moves.

A pause is used only while every live member of every group of the host
announces the ``pause`` feature (rais.core.features): a version-1 host would
take the silence for a failure. This module holds the bounds, the refusal and
the pausing host's own countdown; the inputs are ``Core.pause`` and
``Core.resume``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from rais.core import features
from rais.core.addr import Addr, fmt
from rais.core.messages import HostEntry

MIN_PAUSE = 2.0
"""The shortest pause, in seconds (also at least ``MIN_TIMEOUTS`` x timeout)."""
MIN_TIMEOUTS = 2
MAX_PAUSE = 300.0
"""The longest pause, in seconds (5 minutes)."""
KERNEL_MARGIN = 1.0
"""How much earlier than the group's deadline the kernel lifetime of a pausing
host's addresses runs out (whole seconds; the kernel removes an expired address
within about a second). The agent also resumes only with this much left."""


def bounds(timeout: float) -> tuple[float, float]:
    """The shortest and the longest pause a group with this ``timeout`` allows."""
    return max(MIN_PAUSE, MIN_TIMEOUTS * timeout), MAX_PAUSE


def out_of_bounds(duration: float, timeout: float) -> str | None:
    """Why ``duration`` is not a pause this group allows (None: it is)."""
    low, high = bounds(timeout)
    if duration < low or duration > high:
        return f"a pause must last from {low:g}s to {high:g}s, not {duration:g}s"
    return None


def lacking(own: HostEntry, live: Iterable[HostEntry]) -> list[HostEntry]:
    """The hosts, this one included, that do not announce the ``pause`` feature."""
    return [e for e in (own, *live) if features.PAUSE not in e.features]


def kernel_lifetime(normal: int, remaining: float | None) -> int:
    """The kernel lifetime (whole seconds) a refresh of a held address sets: the
    ``normal`` one (about the timeout), or while a pause has ``remaining``
    seconds left, enough to cover it but running out ``KERNEL_MARGIN`` before it
    ends (never shorter than ``normal``)."""
    if remaining is None or remaining <= 0:
        return normal
    return max(normal, math.floor(remaining - KERNEL_MARGIN))


class OwnPause:
    """This host's own pause: until when (None: not pausing)."""

    __slots__ = ("until",)

    def __init__(self) -> None:
        self.until: float | None = None

    def remaining_ms(self, now: float) -> int:
        """What this host's next info announces: the milliseconds left, at least
        1 while pausing, 0 when not."""
        if self.until is None or now >= self.until:
            return 0
        return max(1, math.ceil((self.until - now) * 1000))

    def lapsed(self, now: float) -> bool:
        """The pause ran out with this process still running: it is over."""
        if self.until is not None and now >= self.until:
            self.until = None
            return True
        return False


def refusal_text(group: str, hosts: list[Addr]) -> str:
    """Why a pause is refused in ``group``: the ``hosts`` lacking the feature."""
    return f"group {group}: " + ", ".join(fmt(h) for h in hosts) + " cannot keep a pause"
