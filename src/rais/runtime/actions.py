"""What a group runner does on the service interface for one action of its
core: every address of an address set added (all or nothing), removed or
announced, the scripts run once per action (docs/configuration.md, *Scripts*).
A mixin of ``GroupRunner`` (rais.runtime.group), kept apart to keep that
module small; it makes no protocol decision."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rais.base.ip import IP, ip_key
from rais.config import GroupConfig
from rais.core.addr import Addr
from rais.core.config import MIN_KERNEL
from rais.core.core import Core
from rais.core.effects import Acquire, Release
from rais.drivers.base import Addresses, Announcer, Scripts, Transport
from rais.runtime.state import HeldFile

log = logging.getLogger("rais.group")


def to_ip(addr: Addr) -> IP:
    return ipaddress.ip_address(addr)


def to_addr(ip: IP) -> Addr:
    return ip.packed


class RefreshFailed(Exception):
    """A held address could not be refreshed before its kernel lifetime ends."""


class LeaseTooShort(Exception):
    """With a guard: too little lease is left to configure an address."""


def guarded_lifetime(lease_left: float) -> int | None:
    """With a guard, the kernel lifetime (whole seconds) to set on an address
    whose lease has ``lease_left`` seconds to run: the whole seconds of it, so
    the kernel removes the address by the time the lease ends (plus its own
    slack, rais.core.config.KERNEL_SLACK); None under ``MIN_KERNEL`` left:
    set nothing (the lifetime set before ends in time)."""
    if lease_left < MIN_KERNEL:
        return None
    return math.floor(lease_left)


@dataclass(frozen=True, slots=True)
class Drivers:
    transport: Transport
    addresses: Addresses
    announcer: Announcer
    scripts: Scripts


class SetActions:
    """The actions; the runner provides the state they use."""

    config: GroupConfig
    drivers: Drivers
    core: Core
    held: HeldFile
    counters: Counter[str]
    lifetime: int
    loop: asyncio.AbstractEventLoop
    _fresh: dict[IP, float]
    _lifetimes: dict[IP, int]
    """The kernel lifetime each held address was last added or refreshed with."""
    _stopped: bool

    def _done(self, address: Addr, ok: bool, reason: str) -> None:
        raise NotImplementedError

    async def _acquire(self, eff: Acquire) -> None:
        """Add every address of the action (the key unless ``extras_only``, and the
        extras), all or nothing, then run the acquire script once."""
        key = to_ip(eff.address)
        members = _members(eff.address, eff.prefixlen, eff.extras, eff.extras_only)
        cfg = self.config
        added: list[tuple[IP, int]] = []
        try:
            for ip, prefixlen in members:
                lifetime = self._add_lifetime(eff.address)
                self.held.add(ip, prefixlen, None if ip == key else key)
                added.append((ip, prefixlen))
                await self.drivers.addresses.add(cfg.interface, ip, prefixlen, lifetime)
                self._fresh[ip] = self.loop.time()
                self._lifetimes[ip] = lifetime
        except Exception as exc:
            self.counters["acquire_failed"] += 1
            for ip, prefixlen in added:
                await self._remove(ip, prefixlen)
            if isinstance(exc, LeaseTooShort):
                self._done(eff.address, False, str(exc))
            else:
                self._done(eff.address, False, f"add {added[-1][0]}: {exc}")
            return
        ok, reason = await self.drivers.scripts.run(
            cfg.acquire_script, self._env(key, "acquire", members)
        )
        if not ok:
            self.counters["acquire_failed"] += 1
            for ip, prefixlen in members:
                await self._remove(ip, prefixlen)
            self._done(eff.address, False, f"acquire script: {reason}")
            return
        self.counters["acquired"] += 1
        self._done(eff.address, True, "")

    def _add_lifetime(self, key: Addr) -> int:
        """The kernel lifetime of an address of the set keyed by ``key`` added
        now: the normal one, or with a guard what its lease allows (raises
        ``LeaseTooShort`` when that is under ``MIN_KERNEL``)."""
        left = self.core.lease_left(key, self.loop.time())
        if left is None:
            return self.lifetime
        lifetime = guarded_lifetime(left)
        if lifetime is None:
            raise LeaseTooShort(
                f"lease: {max(0.0, left):.2f}s left, under {MIN_KERNEL:g}s: not added"
            )
        return lifetime

    async def _release(self, eff: Release) -> None:
        members = _members(eff.address, eff.prefixlen, eff.extras, eff.extras_only)
        ok, reason = await self._release_addresses(to_ip(eff.address), members, script=True)
        self._done(eff.address, ok, reason)

    async def _release_addresses(
        self, key: IP, members: list[tuple[IP, int]], *, script: bool
    ) -> tuple[bool, str]:
        """Run the release script once for these addresses of the set keyed by
        ``key``, then remove every one of them (all are tried)."""
        reason = ""
        if script and self.config.release_script:
            ok, why = await self.drivers.scripts.run(
                self.config.release_script, self._env(key, "release", members)
            )
            if not ok:
                reason = f"release script: {why}"  # the addresses go all the same
        failed = [ip for ip, prefixlen in members if not await self._remove(ip, prefixlen)]
        if failed:
            self.counters["release_failed"] += 1
            return False, f"remove {' '.join(map(str, failed))} failed"
        self.counters["released"] += 1
        return True, reason

    async def _remove(self, ip: IP, prefixlen: int) -> bool:
        try:
            await self.drivers.addresses.remove(self.config.interface, ip, prefixlen)
        except Exception as exc:
            log.error("group %s: remove %s: %s", self.config.name, ip, exc)
            return False
        self.held.discard(ip, prefixlen)
        self._fresh.pop(ip, None)
        self._lifetimes.pop(ip, None)
        return True

    async def _announce(self, ips: list[IP]) -> None:
        """Announce every address of a set (GARP or unsolicited NA), in bursts."""
        cfg = self.config
        for i in range(max(1, cfg.garp_count)):
            if i:
                await asyncio.sleep(cfg.garp_interval)
            for ip in list(ips):
                if self._stopped:
                    return
                if self.core.holding(to_addr(ip)) is None:
                    ips.remove(ip)
                    continue
                try:
                    await self.drivers.announcer.announce(cfg.interface, ip)
                    self.counters["announcements"] += 1
                except Exception as exc:
                    self.counters["announce_errors"] += 1
                    log.error("group %s: announce %s: %s", cfg.name, ip, exc)
                    ips.remove(ip)
            if not ips:
                return

    def _env(self, key: IP, event: str, members: list[tuple[IP, int]]) -> dict[str, str]:
        """The scripts' environment: ``RAIS_ADDRESS`` is the set's key (its only
        address for a single address), ``RAIS_ADDRESSES`` every address this run
        is about, space-separated (docs/configuration.md)."""
        return {
            "RAIS_GROUP": self.config.name,
            "RAIS_ADDRESS": str(key),
            "RAIS_ADDRESSES": " ".join(str(ip) for ip, _ in members),
            "RAIS_INTERFACE": self.config.interface,
            "RAIS_EVENT": event,
        }


def _members(
    key: Addr, prefixlen: int, extras: tuple[tuple[Addr, int], ...], extras_only: bool
) -> list[tuple[IP, int]]:
    """The addresses one action on a set is about: its key (unless
    ``extras_only``), then the extras."""
    head = [] if extras_only else [(to_ip(key), prefixlen)]
    return head + [(to_ip(a), p) for a, p in extras]


def _by_set(
    addresses: Iterable[tuple[IP, int]], of: Mapping[tuple[IP, int], IP]
) -> list[tuple[IP, list[tuple[IP, int]]]]:
    """Group addresses by the key of their set (``of``: an extra's key; an
    address not in it is its own key), keys in address order, key first."""
    groups: dict[IP, list[tuple[IP, int]]] = {}
    for item in sorted(addresses, key=lambda w: ip_key(w[0])):
        groups.setdefault(of.get(item, item[0]), []).append(item)
    for key, members in groups.items():
        members.sort(key=lambda w: (w[0] != key, ip_key(w[0])))
    return sorted(groups.items(), key=lambda g: ip_key(g[0]))
