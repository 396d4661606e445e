"""Operator requests: ``rais move ADDRESS HOST`` and ``rais failback ADDRESS``.

An operator may ask any host; that host advertises the request in its own
entry (so it reaches whoever leads now or later, with no extra message type)
until it is done or superseded:

* MOVE pins the address to the target host: while the target is eligible the
  leader moves the address there (release before acquire, like a failback)
  and keeps it there, whatever the failback policy says. The pin lasts until
  a newer request for that address supersedes it (``rais failback`` is the
  way to end it) or the requesting host stops (then the normal rules apply
  again, so the address may fail back).
* FAILBACK gives the address back to its preferred host now, ignoring
  ``failback = "manual"`` and ``failback_delay``. It is advertised until the
  preferred host serves the address and no other host advertises an older
  request for it (so it has ended every earlier pin), or for
  ``FAILBACK_WAIT`` seconds.

Among the requests for one address (from all live hosts) the one with the
latest stamp wins, ties going to the lower requester id; a host drops its own
request once it sees another host's request win over it. See docs/protocol.md,
"Operator requests".
"""

from __future__ import annotations

from collections.abc import Iterable

from rais.core.addr import Addr, id_key
from rais.core.messages import AddrState, HostEntry, ReqOp, Request

FAILBACK_WAIT = 60.0
"""Seconds a failback request is advertised at most."""


def _beats(a: Request, a_host: Addr, b: Request, b_host: Addr) -> bool:
    """Whether request ``a`` (from ``a_host``) wins over ``b`` (from ``b_host``)."""
    if a.stamp != b.stamp:
        return a.stamp > b.stamp
    return id_key(a_host) < id_key(b_host)


def winning(hosts: Iterable[HostEntry]) -> dict[Addr, Request]:
    """The request in force for each address, over these hosts' entries."""
    best: dict[Addr, tuple[Request, Addr]] = {}
    for h in hosts:
        for r in h.requests:
            cur = best.get(r.address)
            if cur is None or _beats(r, h.id, cur[0], cur[1]):
                best[r.address] = (r, h.id)
    return {address: r for address, (r, _) in best.items()}


def served_by_preferred(address: Addr, hosts: Iterable[HostEntry]) -> bool:
    return any(h.preferred == address and (address, AddrState.ONLINE) in h.served for h in hosts)


class Requests:
    """This host's own requests, one per address."""

    __slots__ = ("host", "mine")

    def __init__(self, host: Addr) -> None:
        self.host = host
        self.mine: dict[Addr, tuple[Request, float]] = {}
        """Address -> (request, when it was made, by the core's clock)."""

    def add(self, now: float, request: Request) -> None:
        self.mine[request.address] = (request, now)

    def snapshot(self) -> tuple[Request, ...]:
        return tuple(r for r, _ in self.mine.values())

    def next_expiry(self) -> float | None:
        times = [t + FAILBACK_WAIT for r, t in self.mine.values() if r.op == ReqOp.FAILBACK]
        return min(times) if times else None

    def prune(self, now: float, hosts: list[HostEntry]) -> bool:
        """Drop what is done, expired or superseded (``hosts``: the live hosts'
        entries, this one's included). True if anything was dropped."""
        if not self.mine:
            return False
        drop = []
        for address, (r, made) in self.mine.items():
            if r.op == ReqOp.FAILBACK and (
                now >= made + FAILBACK_WAIT
                or (
                    served_by_preferred(address, hosts)
                    and not any(
                        o.address == address for h in hosts if h.id != self.host for o in h.requests
                    )
                )
            ):
                drop.append(address)
                continue
            for h in hosts:
                if h.id == self.host:
                    continue
                if any(o.address == address and _beats(o, h.id, r, self.host) for o in h.requests):
                    drop.append(address)
                    break
        for address in drop:
            del self.mine[address]
        return bool(drop)
