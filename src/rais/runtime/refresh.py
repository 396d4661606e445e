"""The dead man's switch of a group runner: every held address carries a
kernel lifetime and is refreshed well before it runs out, so that an agent
that dies (SIGKILL) or stalls (SIGSTOP, a VM pause) leaves nothing behind for
long. A mixin of ``GroupRunner`` (rais.runtime.group), kept apart to keep that
module small; it makes no protocol decision.

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
from collections.abc import Coroutine
from typing import Any

from rais.base.ip import IP
from rais.core.addr import Addr
from rais.core.config import MIN_KERNEL
from rais.core.messages import AddrState
from rais.core.pause import kernel_lifetime
from rais.runtime.actions import RefreshFailed, SetActions, guarded_lifetime, to_addr

log = logging.getLogger("rais.group")


class Refresher(SetActions):
    """The refresher; the runner provides the state it uses."""

    refresh_every: float
    pause_until: float | None

    def _chain(self, address: Addr, coro: Coroutine[Any, Any, None]) -> None:
        raise NotImplementedError

    async def refresh_forever(self) -> None:
        """The dead man's switch, run by the agent as a part it cannot do
        without: refreshes every held address's kernel lifetime. Raises
        ``RefreshFailed`` when an address has gone unrefreshed for so long
        that the kernel is about to remove it behind the core's back."""
        while True:
            await asyncio.sleep(self.refresh_every)
            if self._stopped:
                continue
            now = self.loop.time()
            for ip, prefixlen in self.held.current():
                if self.core.holding(to_addr(ip)) != AddrState.ONLINE:
                    # Being acquired (its script may run long, behind which the
                    # refresh waits in the address's queue) or released.
                    self._fresh[ip] = now
                lease = self.core.lease_left(to_addr(ip), now)
                lifetime = self.lifetime
                if lease is not None:
                    if lease < MIN_KERNEL:
                        # Nothing to refresh: the lifetime set last ends by the lease.
                        self._fresh[ip] = now
                        continue
                    lifetime = self._lifetimes.get(ip, self.lifetime)
                since = self._fresh.setdefault(ip, now)
                if now - since > lifetime - self.refresh_every:
                    raise RefreshFailed(
                        f"{ip} not refreshed for {now - since:.2f}s (kernel lifetime {lifetime}s)"
                    )
                # In its set's queue, so never after its release.
                self._chain(self.core.key_of(to_addr(ip)), self._refresh(ip, prefixlen))

    async def _refresh(self, ip: IP, prefixlen: int) -> None:
        state = self.core.holding(to_addr(ip))
        if self._stopped or state is None or state == AddrState.RELEASING:
            return  # being released (or gone): let the lifetime run out
        if (ip, prefixlen) not in self.held.current():
            return
        try:
            left = None if self.pause_until is None else self.pause_until - self.loop.time()
            lifetime = kernel_lifetime(self.lifetime, left)
            # Read when the add runs, not when it was queued: a refresh that
            # waited (a stalled loop, a long script ahead) sets no more than
            # the lease has left now.
            lease = self.core.lease_left(to_addr(ip), self.loop.time())
            if lease is not None:
                guarded = guarded_lifetime(lease)
                if guarded is None:
                    self.counters["refreshes_skipped"] += 1
                    return
                lifetime = guarded
            await self.drivers.addresses.add(self.config.interface, ip, prefixlen, lifetime)
            self._fresh[ip] = self.loop.time()
            self._lifetimes[ip] = lifetime
            self.counters["refreshes"] += 1
        except Exception as exc:
            self.counters["refresh_errors"] += 1
            log.error("group %s: refresh %s: %s", self.config.name, ip, exc)
