"""The dead man's switch of a group runner: every held address carries a
kernel lifetime and is refreshed well before it runs out, so that an agent
that dies (SIGKILL) or stalls (SIGSTOP, a VM pause) leaves nothing behind for
long. A mixin of ``GroupRunner`` (rais.runtime.group), kept apart to keep that
module small; it makes no protocol decision.

Refreshes run in the runner's timer pass, the wake-up of the heartbeat, every
``refresh_every`` (half the lifetime) per address, each one netlink message
sent without waiting for an answer where the driver can (rais.drivers.nlrefresh).

Without a guard the lifetime is about the group's timeout (whole seconds, at
least 1), or while a pause runs enough to cover it (rais.core.pause). With a
guard (``Core.lease_left`` is not None) it is the whole seconds of the lease
left at the moment of the add, so the kernel removes the address by the time
the lease ends even if the agent never runs again; with under ``MIN_KERNEL``
left nothing is refreshed (the lifetime set before ends in time), and that is
no failure: the core releases the address when its lease runs out.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Coroutine
from typing import Any

from rais.base.ip import IP
from rais.core.addr import Addr
from rais.core.config import MIN_KERNEL
from rais.core.messages import AddrState
from rais.core.pause import kernel_lifetime
from rais.runtime.actions import RefreshFailed, SetActions, guarded_lifetime, to_addr

log = logging.getLogger("rais.group")

STALE = 0.75
"""An address unrefreshed for this share of its kernel lifetime is about to
be removed by the kernel: the refresher fails (and the agent with it)."""


class Refresher(SetActions):
    """The refresher; the runner provides the state it uses."""

    refresh_every: float
    pause_until: float | None
    _refreshing: set[IP]
    _chains: dict[Addr, asyncio.Task[None]]
    _refresh_failed: asyncio.Event
    _refresh_why: str
    _refresh_at: float
    """No held address is due before this (see ``refresh_due``)."""
    _refresh_seen: int
    """``held.changes`` when ``_refresh_at`` was computed."""

    def _chain(self, address: Addr, coro: Coroutine[Any, Any, None]) -> None:
        raise NotImplementedError

    async def refresh_forever(self) -> None:
        """The dead man's switch, run by the agent as a part it cannot do
        without. The refreshes run in the runner's timer pass (``refresh_due``,
        no wake-up of their own); this raises ``RefreshFailed`` when an
        address has gone unrefreshed for so long that the kernel is about to
        remove it behind the core's back."""
        await self._refresh_failed.wait()
        raise RefreshFailed(self._refresh_why)

    def refresh_due(self, now: float) -> None:
        """Refresh every held address last refreshed ``refresh_every`` ago or
        more: at once through ``refresh_now`` when the driver can (one netlink
        message, no answer awaited), else queued in its set's chain (so never
        after its release)."""
        if now < self._refresh_at and self.held.changes == self._refresh_seen:
            return  # nothing due, nothing new held (most heartbeats)
        self._refresh_seen = self.held.changes
        held = self.held.current()
        for ip, prefixlen in held:
            addr = to_addr(ip)
            if self.core.holding(addr) != AddrState.ONLINE:
                # Being acquired (its script may run long, behind which the
                # refresh waits in the address's queue) or released.
                self._fresh[ip] = now
                continue
            lease = self.core.lease_left(addr, now)
            lifetime = self.lifetime
            if lease is not None:
                if lease < MIN_KERNEL:
                    # Nothing to refresh: the lifetime set last ends by the lease.
                    self._fresh[ip] = now
                    continue
                lifetime = self._lifetimes.get(ip, self.lifetime)
            since = self._fresh.setdefault(ip, now)
            if now - since < self.refresh_every:
                continue
            if now - since > lifetime * STALE and not self._refresh_failed.is_set():
                self._refresh_why = (
                    f"{ip} not refreshed for {now - since:.2f}s (kernel lifetime {lifetime}s)"
                )
                self._refresh_failed.set()
            if ip in self._refreshing:
                continue  # a refresh is queued already
            key = self.core.key_of(addr)
            if key not in self._chains and self._refresh_now(ip, prefixlen, now):
                continue
            self._refreshing.add(ip)
            self._chain(key, self._refresh(ip, prefixlen))
        # A refresh done now is due again a full interval later; one queued or
        # skipped is looked at again at the next heartbeat.
        due = min((self._fresh.get(ip, now) for ip, _ in held), default=math.inf)
        self._refresh_at = now if self._refreshing else due + self.refresh_every

    def _lifetime_now(self, ip: IP, now: float) -> int | None:
        """The lifetime a refresh sets now (None: set none, see ``guarded_lifetime``)."""
        left = None if self.pause_until is None else self.pause_until - now
        lifetime = kernel_lifetime(self.lifetime, left)
        # Read when the add runs, not when it was queued: a refresh that
        # waited (a stalled loop, a long script ahead) sets no more than
        # the lease has left now.
        lease = self.core.lease_left(to_addr(ip), now)
        if lease is not None:
            return guarded_lifetime(lease)
        return lifetime

    def _refresh_now(self, ip: IP, prefixlen: int, now: float) -> bool:
        lifetime = self._lifetime_now(ip, now)
        if lifetime is None:
            self.counters["refreshes_skipped"] += 1
            return True
        if not self.drivers.addresses.refresh_now(self.config.interface, ip, prefixlen, lifetime):
            return False
        self._refreshed(ip, lifetime, now)
        return True

    def _refreshed(self, ip: IP, lifetime: int, now: float) -> None:
        self._fresh[ip] = now
        self._lifetimes[ip] = lifetime
        self.counters["refreshes"] += 1

    async def _refresh(self, ip: IP, prefixlen: int) -> None:
        try:
            await self._refresh_slowly(ip, prefixlen)
        finally:
            self._refreshing.discard(ip)

    async def _refresh_slowly(self, ip: IP, prefixlen: int) -> None:
        state = self.core.holding(to_addr(ip))
        if self._stopped or state is None or state == AddrState.RELEASING:
            return  # being released (or gone): let the lifetime run out
        if (ip, prefixlen) not in self.held.current():
            return
        try:
            lifetime = self._lifetime_now(ip, self.loop.time())
            if lifetime is None:
                self.counters["refreshes_skipped"] += 1
                return
            await self.drivers.addresses.add(self.config.interface, ip, prefixlen, lifetime)
            self._refreshed(ip, lifetime, self.loop.time())
        except Exception as exc:
            self.counters["refresh_errors"] += 1
            log.error("group %s: refresh %s: %s", self.config.name, ip, exc)
