"""Publishing a group's addresses to an authoritative DNS server by RFC 2136
dynamic UPDATE, signed with TSIG.

``publish(addresses)`` only records the desired set and returns. One
background task, ``run()`` (it runs until cancelled and never raises
otherwise), sends: at most one update is ever in flight, it always carries
the latest desired set (publishes made meanwhile are coalesced), and nothing
is sent when that set is the one the server last accepted. After a failure
the server's state is unknown, so the next attempt is sent even if the set
went back to the last accepted one.

Each update is one atomic message: delete the A RRset and the AAAA RRset of
the name, then add the new records (an empty set leaves the name without
addresses). It goes by UDP and again by TCP when the answer is truncated.
Failures (timeout, network error, a TSIG error, an rcode other than NOERROR)
are logged on ``rais.dns.update``, counted in ``stats.failed`` by reason and
retried with exponential backoff (``backoff = (first, max)`` seconds, doubling,
no jitter; reset by a success).

``CoalescingPublisher`` holds that pattern; ``ZoneFilePublisher``
(``rais.dns.zonefile``) uses it too.
"""

from __future__ import annotations

import asyncio
import binascii
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.tsig
import dns.update

from rais.base.ip import IP, ip_key

log = logging.getLogger("rais.dns.update")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
ResultHook = Callable[[bool, str], None]
T = TypeVar("T")

TSIG_ALGORITHMS = {
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}


@dataclass
class PublishStats:
    """Counters of one publisher.

    ``sent``: attempts made; ``ok``: attempts that succeeded; ``failed``:
    failed attempts by reason; ``coalesced``: published sets replaced by a
    later one before they were sent; ``skipped``: wake-ups with nothing to
    send (the desired set was already accepted)."""

    sent: int = 0
    ok: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    coalesced: int = 0
    skipped: int = 0
    last_ok: float | None = None
    last_error: str | None = None

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())


class PublishError(Exception):
    """One failed attempt: ``reason`` is the short key counted in the stats."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def check_backoff(backoff: tuple[float, float]) -> tuple[float, float]:
    first, maximum = backoff
    if not 0 < first <= maximum:
        raise ValueError(f"backoff must be (first, max) with 0 < first <= max, not {backoff}")
    return first, maximum


def describe(addresses: Iterable[IP]) -> str:
    text = " ".join(str(a) for a in sorted_addresses(addresses))
    return text or "(none)"


def sorted_addresses(addresses: Iterable[IP]) -> list[IP]:
    return sorted(addresses, key=ip_key)


class CoalescingPublisher(Generic[T]):
    """Latest-wins publishing of values of type ``T`` with one attempt in
    flight; subclasses take what they publish with ``_offer(value)`` and
    implement ``_send(value) -> detail`` (raising ``PublishError`` on failure)
    and ``_describe(value)`` for the log."""

    def __init__(
        self,
        *,
        logger: logging.Logger,
        backoff: tuple[float, float],
        clock: Clock,
        sleep: Sleep,
        on_result: ResultHook | None,
    ) -> None:
        self._log = logger
        self._backoff = check_backoff(backoff)
        self._clock = clock
        self._sleep = sleep
        self._on_result = on_result
        self._desired: T | None = None
        self._accepted: T | None = None
        self._unsent = False
        self._wake = asyncio.Event()
        self._in_flight = 0
        self.max_in_flight = 0
        self.stats = PublishStats()

    @property
    def desired(self) -> T | None:
        """The last published value (None before the first publish)."""
        return self._desired

    @property
    def accepted(self) -> T | None:
        """The value the server last accepted, None if unknown (none yet, or a
        failure since)."""
        return self._accepted

    @property
    def settled(self) -> bool:
        return self._desired is not None and self._desired == self._accepted

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _offer(self, new: T) -> None:
        """Record ``new`` as the value to publish; ``run()`` sends it."""
        if self._unsent and new != self._desired:
            self.stats.coalesced += 1
        self._desired = new
        self._unsent = True
        self._wake.set()

    def resend(self) -> None:
        """Forget what the server accepted: the desired set is sent again
        (after the server lost its state, say)."""
        self._accepted = None
        self._wake.set()

    async def run(self) -> None:
        """Send until cancelled; never raises anything but CancelledError."""
        delay = 0.0
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                delay = await self._step(delay)
            except Exception:  # an injected clock or sleep failed: keep going
                self._log.exception("%s: internal error", self)
                delay = self._backoff[1]
                await asyncio.sleep(delay)
                self._wake.set()

    async def _step(self, delay: float) -> float:
        """One wake-up: send the desired set if needed; return the next delay."""
        target = self._desired
        self._unsent = False
        if target is None:
            return delay
        if target == self._accepted:
            self.stats.skipped += 1
            self._log.debug("%s: %s already published", self, self._describe(target))
            return delay
        if await self._attempt(target):
            return 0.0
        first, maximum = self._backoff
        delay = first if delay == 0.0 else min(delay * 2, maximum)
        self._log.debug("%s: retrying in %.3g s", self, delay)
        try:
            await self._sleep(delay)
        finally:
            self._wake.set()
        return delay

    async def _attempt(self, target: T) -> bool:
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        self.stats.sent += 1
        try:
            detail = await self._send(target)
        except asyncio.CancelledError:
            self._accepted = None
            raise
        except PublishError as e:
            reason, detail = e.reason, e.detail
        except Exception as e:  # run() must survive anything a send does
            self._log.exception("%s: unexpected error", self)
            reason, detail = "error", f"{type(e).__name__}: {e}"
        else:
            self._accepted = target
            self.stats.ok += 1
            self.stats.last_ok = self._clock()
            self._log.info("%s: published %s (%s)", self, self._describe(target), detail)
            self._report(True, detail)
            return True
        finally:
            self._in_flight -= 1
        self._accepted = None
        self.stats.failed[reason] += 1
        self.stats.last_error = e_text = f"{reason}: {detail}"
        self._log.warning("%s: publishing %s failed: %s", self, self._describe(target), e_text)
        self._report(False, e_text)
        return False

    def _report(self, ok: bool, detail: str) -> None:
        if self._on_result is None:
            return
        try:
            self._on_result(ok, detail)
        except Exception:
            self._log.exception("%s: on_result hook failed", self)

    async def _send(self, target: T) -> str:
        raise NotImplementedError

    def _describe(self, target: T) -> str:
        raise NotImplementedError


class UpdatePublisher(CoalescingPublisher[frozenset[IP]]):
    """Keeps the A and AAAA RRsets of ``name`` in ``zone`` on ``server`` equal
    to the published set, by TSIG-signed dynamic UPDATE.

    ``server`` is (IP address, port); ``name`` is absolute (ending in ".") or
    relative to ``zone`` ("@" is the apex); ``secret_b64`` is the base64 TSIG
    secret; ``algorithm`` one of ``TSIG_ALGORITHMS``; ``timeout`` bounds one
    attempt (UDP and a TCP retry together)."""

    def __init__(
        self,
        server: tuple[str, int],
        zone: str,
        name: str,
        ttl: int,
        key_name: str,
        secret_b64: str,
        algorithm: str = "hmac-sha256",
        timeout: float = 2.0,
        backoff: tuple[float, float] = (0.5, 30.0),
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        on_result: ResultHook | None = None,
    ) -> None:
        super().__init__(logger=log, backoff=backoff, clock=clock, sleep=sleep, on_result=on_result)
        host, port = server
        ipaddress.ip_address(host)  # ValueError: dnspython needs an address
        if not 0 < port < 65536:
            raise ValueError(f"bad port {port}")
        if not 0 <= ttl < 2**31:
            raise ValueError(f"bad TTL {ttl}")
        if timeout <= 0:
            raise ValueError(f"bad timeout {timeout}")
        alg = TSIG_ALGORITHMS.get(algorithm.lower().rstrip("."))
        if alg is None:
            raise ValueError(f"unsupported TSIG algorithm {algorithm!r}")
        try:
            secret = binascii.a2b_base64(secret_b64.encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError) as e:
            raise ValueError(f"TSIG secret is not base64: {e}") from None
        if not secret:
            raise ValueError("empty TSIG secret")
        self.server = (host, port)
        self.zone = dns.name.from_text(zone)
        self.name = dns.name.from_text(name, origin=self.zone)
        if not self.name.is_subdomain(self.zone):
            raise ValueError(f"{self.name} is not in zone {self.zone}")
        self.ttl = ttl
        self.timeout = timeout
        self._key = dns.tsig.Key(key_name, secret, alg)

    def __str__(self) -> str:
        return f"update {self.name} @{self.server[0]}#{self.server[1]}"

    def message(self, addresses: Iterable[IP]) -> dns.update.UpdateMessage:
        """The signed UPDATE that makes ``addresses`` the name's A/AAAA records."""
        msg = dns.update.UpdateMessage(
            self.zone, keyring=self._key, keyname=self._key.name, keyalgorithm=self._key.algorithm
        )
        msg.delete(self.name, "A")
        msg.delete(self.name, "AAAA")
        for address in sorted_addresses(addresses):
            rdtype = "A" if address.version == 4 else "AAAA"
            msg.add(self.name, self.ttl, rdtype, str(address))
        return msg

    def publish(self, addresses: Iterable[IP]) -> None:
        """Record ``addresses`` as the set to publish; ``run()`` sends it."""
        self._offer(frozenset(addresses))

    def _describe(self, target: frozenset[IP]) -> str:
        return describe(target)

    async def _send(self, addresses: frozenset[IP]) -> str:
        msg = self.message(addresses)
        host, port = self.server
        try:
            async with asyncio.timeout(self.timeout):
                response, tcp = await dns.asyncquery.udp_with_fallback(
                    msg, host, timeout=self.timeout, port=port
                )
        except (TimeoutError, dns.exception.Timeout):
            raise PublishError("timeout", f"no answer within {self.timeout} s") from None
        except dns.tsig.PeerBadKey as e:
            raise PublishError("badkey", f"server does not know key {self._key.name}") from e
        except dns.tsig.PeerBadSignature as e:
            raise PublishError("badsig", "server rejected the TSIG signature") from e
        except dns.tsig.PeerBadTime as e:
            raise PublishError("badtime", "server says our clock is off") from e
        except (
            dns.tsig.PeerError,
            dns.tsig.BadSignature,
            dns.tsig.BadTime,
            dns.tsig.BadKey,
            dns.tsig.BadAlgorithm,
            dns.message.UnknownTSIGKey,
        ) as e:
            raise PublishError("tsig", f"{type(e).__name__}: {e}") from e
        except dns.exception.FormError as e:
            raise PublishError("malformed", f"{type(e).__name__}: {e}") from e
        except dns.exception.DNSException as e:
            raise PublishError("dns", f"{type(e).__name__}: {e}") from e
        except OSError as e:
            raise PublishError("network", f"{type(e).__name__}: {e}") from e
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            text = dns.rcode.to_text(rcode)
            raise PublishError(text.lower(), f"server answered {text}")
        return "NOERROR over TCP" if tcp else "NOERROR"
