"""The state of this host's service link for the group (issue 13, "link
tracking"), as the driver reports it, and the hold-down after the carrier
returns.

The driver reports every change (``Core.link_state``): carrier up or down,
with a reason ("eth0: no carrier", "eth0: admin down", "eth0: deleted").
The link is *fit* while the carrier is up and has stayed up for ``hold``
seconds since it last came back; a host whose link is not fit advertises OK =
false (rais.core.parts: the entry's OK is "tests pass and link fit"), so it
releases everything, is given nothing and refuses acquires, exactly like a
failed test. At start the link counts as fit (up, no hold-down) until the
driver says otherwise: an agent that starts with the carrier up must not
wait a hold-down, and one without link tracking never reports anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from rais.core.effects import EventKind
from rais.core.outbox import Outbox


@dataclass(frozen=True, slots=True)
class LinkView:
    """The link as ``Core.view`` shows it."""

    fit: bool
    """Counts as up: carrier up and held for the hold-down (the entry's OK needs it)."""
    carrier: bool
    """The last state the driver reported."""
    reason: str
    """The last report's reason ("" before any report)."""
    since: float
    """When the carrier last changed (or the core started)."""
    hold_left: float | None
    """Seconds left of the hold-down (None: none running)."""

    @property
    def state(self) -> str:
        """ "up", "down" or "holding" (carrier back, hold-down running)."""
        if self.fit:
            return "up"
        return "holding" if self.carrier else "down"


class Link:
    """The carrier as last reported, and the hold-down deadline; raises
    ``link-down`` and ``link-up`` (once per change of fitness)."""

    __slots__ = ("carrier", "fit", "fit_at", "hold", "out", "reason", "since")

    def __init__(self, hold: float, now: float, out: Outbox | None = None) -> None:
        self.out = out
        self.hold = hold
        self.carrier = True
        self.fit = True
        self.fit_at: float | None = None
        """When the hold-down ends (None: none running)."""
        self.reason = ""
        self.since = now

    def report(self, now: float, up: bool, reason: str) -> str | None:
        """The driver's report. Returns "down" when the link stops being fit
        (the host must give everything up), "up" when it is fit at once (no
        hold-down), else None (nothing the host must act on now)."""
        change = self._report(now, up, reason)
        if change is not None and self.out is not None:
            kind = EventKind.LINK_DOWN if change == "down" else EventKind.LINK_UP
            self.out.event(now, kind, None, reason)
        return change

    def _report(self, now: float, up: bool, reason: str) -> str | None:
        if up != self.carrier:
            self.since = now
        self.reason = reason
        if not up:
            self.carrier = False
            self.fit_at = None
            if self.fit:
                self.fit = False
                return "down"
            return None
        if self.carrier:
            return None
        self.carrier = True
        if self.hold <= 0:
            self.fit = True
            return "up"
        self.fit_at = now + self.hold
        return None

    def expire(self, now: float) -> bool:
        """True if the hold-down ended now: the link is fit again."""
        if self.fit_at is None or now < self.fit_at:
            return False
        self.fit_at = None
        self.fit = True
        if self.out is not None:
            held = f"{self.reason} (up for {self.hold:g}s)"
            self.out.event(now, EventKind.LINK_UP, None, held)
        return True

    def view(self, now: float) -> LinkView:
        left = None if self.fit_at is None else max(0.0, self.fit_at - now)
        return LinkView(self.fit, self.carrier, self.reason, self.since, left)
