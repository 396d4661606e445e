"""The addresses this host serves, and every transition of their state.

Figures 4B/4C (obeying the leader), 5B/5C (the outcome of acquire and release
actions) and step 320 (a failed test releases everything). Actions on one
address never overlap: a release asked for while the acquire is still running
is remembered and started when the acquire completes.
"""

from __future__ import annotations

from rais.core.addr import Addr
from rais.core.effects import EventKind
from rais.core.messages import AddrState, HostEntry
from rais.core.outbox import Outbox


class Served:
    __slots__ = ("_release_after", "out", "prefix", "states")

    def __init__(self, out: Outbox) -> None:
        self.out = out
        self.states: dict[Addr, AddrState] = {}
        self.prefix: dict[Addr, int] = {}
        self._release_after: set[Addr] = set()

    def snapshot(self) -> tuple[tuple[Addr, AddrState], ...]:
        return tuple(self.states.items())

    def online(self) -> list[Addr]:
        return [a for a, s in self.states.items() if s == AddrState.ONLINE]

    def acquire(self, address: Addr, prefixlen: int) -> bool:
        """Start acquiring (the caller has checked OK/quiesce). False if already served."""
        if address in self.states:
            if self.states[address] == AddrState.ACQUIRING:
                self._release_after.discard(address)
            return False
        self.states[address] = AddrState.ACQUIRING
        self.prefix[address] = prefixlen
        self.out.acquire(address, prefixlen)
        return True

    def resume(self, address: Addr, prefixlen: int) -> bool:
        """Hold ``address`` ONLINE at once: the previous process of this host
        kept it configured across an in-place restart (rais.core.pause). False
        if it is served already."""
        if address in self.states:
            return False
        self.states[address] = AddrState.ONLINE
        self.prefix[address] = prefixlen
        self.out.announce(address, prefixlen)
        return True

    def release(self, address: Addr) -> bool:
        """Start releasing an address this host serves. False if there was nothing to do."""
        state = self.states.get(address)
        if state is None or state == AddrState.RELEASING:
            return False
        if state == AddrState.ACQUIRING:
            self._release_after.add(address)
            return False
        self.states[address] = AddrState.RELEASING
        self.out.release(address, self.prefix[address])
        return True

    def release_all(self) -> bool:
        changed = False
        for address in list(self.states):
            changed = self.release(address) or changed
        return changed

    def done(self, now: float, address: Addr, ok: bool, reason: str) -> bool:
        """An action on ``address`` completed. Returns True if the state changed."""
        state = self.states.get(address)
        if state == AddrState.ACQUIRING:
            if ok:
                self.states[address] = AddrState.ONLINE
                self.out.event(now, EventKind.ACQUIRED, address, reason)
                if address in self._release_after:
                    self._release_after.discard(address)
                    self.release(address)
                else:
                    self.out.announce(address, self.prefix[address])
            else:
                # The driver has already removed the address (figure 5B, step 542).
                del self.states[address]
                self._release_after.discard(address)
                self.out.event(now, EventKind.ACQUIRE_FAILED, address, reason)
            return True
        if state == AddrState.RELEASING:
            del self.states[address]
            kind = EventKind.RELEASED if ok else EventKind.RELEASE_FAILED
            self.out.event(now, kind, address, reason)
            return True
        return False

    def announce_all(self) -> None:
        for address in self.online():
            self.out.announce(address, self.prefix[address])

    def reannounce_resolved(self, prev: HostEntry, entry: HostEntry) -> None:
        """Another host stopped claiming an address this host holds: a duplicate was
        resolved in our favour, so tell the link again who answers for it."""
        still = {a for a, _ in entry.served}
        for address, _ in prev.served:
            if address not in still and self.states.get(address) == AddrState.ONLINE:
                self.out.announce(address, self.prefix[address])
