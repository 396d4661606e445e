"""What a host's information entry (figure 2C) lets it do: fit, eligible, can lead.

The flags of the entry decide three things, each written once here:

* **fit** (to serve its own preferred address): OK, not quiesced, not leaving.
  The orphan countdown of an address runs while its preferred host is neither
  fit nor serving it, and a host brings its address into the group only once
  it is fit (p. 7 of the patent; core/addrtable.py, core/emit.py).
* **eligible** (to be given any address): fit and not an observer. The leader's
  spare and non-spare eligible lists (figure 6A, step 608), the hosts it places
  orphans on and moves addresses to (core/control.py), and what a host itself
  accepts an acquire from its leader for (figure 4B).
* **can lead**: settled, not an observer, not leaving, not pausing (step 602,
  core/membership.py).
* **paused** (``rais pause``, beyond the patent): the host announced that it
  restarts in place; the leader gives it nothing and touches none of its
  addresses (core/control.py), and it cannot lead (rais.core.pause).

"Leaving" is the entry's flag: the host has left the group. Views that fold
that into liveness instead (the DNS thread's ``HostView``, the simulator's
ground truth) give ``leaving`` as "not live" and read the same predicates.
"""

from __future__ import annotations

from typing import Protocol

from rais.core.messages import HostEntry


class Flags(Protocol):
    """The flags fit and eligible read: a HostEntry, or a view with the same flags."""

    @property
    def ok(self) -> bool: ...

    @property
    def quiesced(self) -> bool: ...

    @property
    def observer(self) -> bool: ...

    @property
    def leaving(self) -> bool: ...


def fit(host: Flags) -> bool:
    """Fit to serve its own address: OK, not quiesced, not leaving."""
    return host.ok and not host.quiesced and not host.leaving


def eligible(host: Flags) -> bool:
    """Eligible for any address: fit and not an observer."""
    return fit(host) and not host.observer


def pausing(entry: HostEntry) -> bool:
    """Announced a pause (``rais pause``): keep its addresses where they are."""
    return entry.pause_ms > 0


def can_lead(entry: HostEntry) -> bool:
    """May be the leader: settled, not an observer, not leaving, not pausing."""
    return entry.settled and not entry.observer and not entry.leaving and not entry.pause_ms
