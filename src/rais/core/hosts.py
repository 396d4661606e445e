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
* **can lead**: settled, not an observer, not leaving (step 602,
  core/membership.py).

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


def can_lead(entry: HostEntry) -> bool:
    """May be the leader: settled, not an observer, not leaving."""
    return entry.settled and not entry.observer and not entry.leaving
