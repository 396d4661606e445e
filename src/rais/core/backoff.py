"""The leader's acquire backoff (rule 3 of rais.core.control): a host whose
acquire of an address failed is not asked for it again for a while, doubling
from the base (one timeout) up to 64 times it, until an acquire succeeds."""

from __future__ import annotations

from rais.core.addr import Addr


class Backoff:
    __slots__ = ("base", "blocked", "steps")

    def __init__(self, base: float) -> None:
        self.base = base
        self.blocked: dict[tuple[Addr, Addr], float] = {}
        """(host, address): not asked again before this time."""
        self.steps: dict[tuple[Addr, Addr], float] = {}
        """(host, address): the last backoff, for doubling."""

    def failed(self, now: float, host: Addr, address: Addr) -> None:
        key = (host, address)
        last = self.steps.get(key)
        step = min(last * 2, self.base * 64) if last else self.base
        self.steps[key] = step
        self.blocked[key] = now + step

    def succeeded(self, host: Addr, address: Addr) -> None:
        self.steps.pop((host, address), None)
        self.blocked.pop((host, address), None)

    def may_take(self, now: float, host: Addr, address: Addr) -> bool:
        until = self.blocked.get((host, address))
        return until is None or until <= now

    def expire(self, now: float) -> bool:
        """Forget the backoffs that ran out; True if any did."""
        ready = [k for k, until in self.blocked.items() if until <= now]
        for key in ready:
            del self.blocked[key]
        return bool(ready)
