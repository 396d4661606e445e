"""The arbiter loop of ``guard = "etcd"``: one per group, a part of the agent
(rais.runtime.supervise, rule ``keep``) that keeps the group's leader key in
etcd while the group's core wants it (``Campaign``) and tells the core every
outcome (``Core.arbiter_state``, through the group runner). It decides
nothing of the protocol: the core says when to want the key, and what holding
it allows (rais.core.guard).

While the core wants the key the loop campaigns for ``prefix + group name``
(value: this host's id) under a lease of ``ttl`` (one transaction on create
revision 0, ``Arbiter.campaign``) and, once it holds it, renews the lease
every ``renew_every`` (a third of the ttl). What it reports, after each try:

* won or renewed: ``reachable, held, token = the key's create revision,
  until = Leadership.valid_until`` (the ttl counted from the send of the
  grant or renewal: the key is surely this host's until then);
* another host holds the key: ``reachable, not held``; campaign again after
  about ttl / 3;
* the keepalive says the lease or the key is gone: ``reachable, not held``;
  campaign again after about ttl / 3;
* etcd unreachable: ``not reachable``, and ``held`` with the last
  ``valid_until`` while that has not passed; tried again soon (0.2 s, growing
  to 0.5 s);
* etcd refuses (bad credentials, no permission): logged, reported as
  unreachable, tried again slowly (every 5 s; a renewal still due before the
  lease ends is tried at the renewal interval).

When the core no longer wants the key (``want(False)``), or the loop ends (the
group leaves, the agent stops, a failure), it first reports ``not held`` (the
core must stop counting on the key before anyone else can get it) and then
resigns: it revokes the lease, and the key goes with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from rais.drivers.base import Arbiter, ArbiterError, ArbiterRefused, Holder, Leadership

log = logging.getLogger("rais.arbiter")

RETRY_MIN = 0.2
"""The first retry after etcd did not answer (seconds)."""
RETRY_MAX = 0.5
"""The longest retry interval while etcd does not answer."""
RETRY_GROWTH = 1.5
REFUSED_RETRY = 5.0
"""The retry interval after etcd refused a request (trying again soon will not help)."""
RESIGN_TIMEOUT = 1.0
"""How long a resignation may take; past it the lease lapses by itself (ttl)."""


class Report(Protocol):
    """Where the outcomes go (``GroupRunner.arbiter_state``)."""

    def __call__(
        self, *, reachable: bool, held: bool, token: int = 0, until: float = 0.0
    ) -> None: ...


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class Campaigner:
    """Keeps one group's leader key while the core wants it (module doc)."""

    def __init__(
        self,
        arbiter: Arbiter,
        *,
        key: str,
        value: bytes,
        ttl: float,
        report: Report,
        clock: Callable[[], float] = _loop_time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        name: str = "",
    ) -> None:
        """``clock`` must be the clock of the arbiter's ``valid_until`` and of
        the core (the event loop's); ``sleep`` waits that long on it."""
        self.arbiter = arbiter
        self.key = key
        self.value = value
        self.ttl = ttl
        self.report = report
        self.clock = clock
        self.sleep = sleep
        self.name = name or key
        self.lead: Leadership | None = None
        """The key while this host holds it (or may still, etcd unreachable)."""
        self.wanted = False
        self.reachable: bool | None = None
        """Whether etcd answered the last request (None: not asked yet)."""
        self.last_error = ""
        self.counters: dict[str, int] = {}
        self._retry = RETRY_MIN
        self._wake = asyncio.Event()

    def want(self, want: bool) -> None:
        """The core's wish (``Campaign.want``): take effect at once."""
        if want != self.wanted:
            self.wanted = want
            self._wake.set()

    async def run(self) -> None:
        """Until cancelled; resigns a key it holds on the way out."""
        try:
            while True:
                await self.step()
        finally:
            if self.lead is not None:
                await self._resign()

    async def step(self) -> None:
        """One try (campaign, renewal or resignation), then the wait after it."""
        self._wake.clear()
        if not self.wanted:
            if self.lead is not None:
                await self._resign()
                return
            await self._wake.wait()
            return
        delay = await (self._campaign() if self.lead is None else self._renew())
        await self._pause(delay)

    # ------------------------------------------------------------- the tries

    async def _campaign(self) -> float:
        self._count("campaigns")
        try:
            won = await self.arbiter.campaign(self.key, self.value, self.ttl)
        except ArbiterError as exc:
            return self._failed(exc, None)
        self._answered()
        if isinstance(won, Holder) and await self._kept(won):
            return self.lead.renew_every if self.lead is not None else 0.0
        if isinstance(won, Holder):
            if won != self._shown_holder:  # logged once per holder
                self._shown_holder = won
                whose = won.value.decode(errors="replace")
                if won.value == self.value:
                    whose += " (this host's previous run: its lease lapses within the ttl)"
                log.info("%s: %s is held by %s, token %d", self.name, self.key, whose, won.revision)
            self._count("lost")
            self._tell(held=False)
            return self.ttl / 3
        self._count("won")
        self.lead = won
        if not self.wanted:  # the wish changed while campaigning
            await self._resign()
            return 0.0
        log.info("%s: holding %s, token %d", self.name, self.key, won.revision)
        self._tell(held=True)
        return won.renew_every

    _shown_holder: Holder | None = None
    _lapsed: Leadership | None = None
    """The leadership whose lease this loop saw lapse while etcd was unreachable."""

    async def _kept(self, holder: Holder) -> bool:
        """The key is held under this host's value: if it is the leadership that
        lapsed while etcd could not be reached (etcd restored the lease when it
        came back, as a restarted etcd does), renew it and hold it again, with
        the same token. Nobody else held the key meanwhile: its create revision
        is unchanged."""
        lapsed, self._lapsed = self._lapsed, None
        if lapsed is None or (holder.value, holder.revision) != (self.value, lapsed.revision):
            return False
        try:
            kept = await self.arbiter.keepalive(lapsed)
        except ArbiterError:
            self._lapsed = lapsed
            return False
        if not kept:
            return False
        self.lead = lapsed
        log.info("%s: %s is still this host's, token %d", self.name, self.key, lapsed.revision)
        self._tell(held=True)
        return True

    async def _renew(self) -> float:
        lead = self.lead
        assert lead is not None
        try:
            kept = await self.arbiter.keepalive(lead)
        except ArbiterError as exc:
            return self._failed(exc, lead)
        self._answered()
        if not kept:
            self._count("keys_lost")
            log.warning("%s: %s is lost (its lease or the key is gone)", self.name, self.key)
            self.lead = None
            self._tell(held=False)
            return self.ttl / 3
        self._count("renewals")
        self._tell(held=True)
        return lead.renew_every

    async def _resign(self) -> None:
        lead, self.lead = self.lead, None
        if lead is None:
            return
        self._tell(held=False)  # first: the core stops counting on the key
        self._count("resigned")
        try:
            # Not wait_for: on 3.11 it swallows a cancellation that meets a done call.
            async with asyncio.timeout(RESIGN_TIMEOUT):
                await self.arbiter.resign(lead)
            log.info("%s: resigned %s", self.name, self.key)
        except (ArbiterError, TimeoutError) as exc:
            self._count("resign_errors")
            log.warning(
                "%s: resigning %s: %s (its lease lapses by itself within %gs)",
                self.name,
                self.key,
                exc or type(exc).__name__,
                self.ttl,
            )

    # --------------------------------------------------------------- helpers

    def _failed(self, exc: ArbiterError, lead: Leadership | None) -> float:
        """etcd did not answer (or refused): report it, and when to try again."""
        refused = isinstance(exc, ArbiterRefused)
        self._count("refused" if refused else "unreachable")
        text = str(exc) or type(exc).__name__
        if refused:
            log.error("%s: etcd refused: %s (retrying every %gs)", self.name, text, REFUSED_RETRY)
        elif self.reachable is not False:
            log.warning("%s: etcd unreachable: %s", self.name, text)
        self.reachable = False
        self.last_error = text
        now = self.clock()
        delay = REFUSED_RETRY if refused else self._retry
        if not refused:
            self._retry = min(self._retry * RETRY_GROWTH, RETRY_MAX)
        if lead is not None and now < lead.valid_until:
            self._tell(held=True)  # may still hold it: until its lease surely ends
            if refused:
                delay = lead.renew_every
            return min(delay, lead.valid_until - now)
        if lead is not None:
            log.warning("%s: %s lapsed while etcd was unreachable", self.name, self.key)
            self.lead = None
            self._lapsed = lead
        self._tell(held=False)
        return delay

    def _answered(self) -> None:
        if self.reachable is False:
            log.info("%s: etcd reachable again", self.name)
        self.reachable = True
        self.last_error = ""
        self._retry = RETRY_MIN

    def _tell(self, *, held: bool) -> None:
        lead = self.lead
        if held and lead is not None:
            self.report(
                reachable=bool(self.reachable),
                held=True,
                token=lead.revision,
                until=lead.valid_until,
            )
        else:
            self.report(reachable=bool(self.reachable), held=False)

    async def _pause(self, delay: float) -> None:
        """Wait ``delay`` seconds, or less if the wish changes meanwhile."""
        if self._wake.is_set():
            return
        waker = asyncio.ensure_future(self._wake.wait())
        sleeper = asyncio.ensure_future(self.sleep(max(0.0, delay)))
        try:
            await asyncio.wait({waker, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waker.cancel()
            sleeper.cancel()

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1
