"""The agent's DNS: one ``GroupDns`` per group with a ``[group.dns]`` table, the
DNS thread (it recomputes a group's answer when what the answer depends on
changed, at most every 100 ms), the zones the embedded servers answer and the
servers themselves.

While the DNS thread is not running (restarting after a failure, or not yet
started) every zone is stale: the embedded server leaves the groups' names
unanswered, as in warm-up (docs/operations.md, "Supervision").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from rais.config import IP, GroupConfig
from rais.dns.group import GroupDns, merge_zones
from rais.dns.server import DnsServer, ZoneData
from rais.runtime.events import AgentEventKind
from rais.runtime.group import GroupRunner
from rais.runtime.supervise import Part

TICK = 0.1
"""Seconds between two recomputations at least (changes in between wait and
are taken together)."""


class DnsService:
    def __init__(
        self,
        runners: Mapping[str, GroupRunner],
        *,
        ns: tuple[str, ...],
        emit: Callable[[AgentEventKind, str, str], None],
        published: Callable[[str, str, bool], None],
        make_group_dns: Callable[..., GroupDns] = GroupDns,
    ) -> None:
        """``runners``: the agent's groups by name (read at every tick);
        ``ns``: the NS names of every zone; ``emit(kind, group, reason)``: the
        DNS events; ``published(group, publisher, ok)``: every publish attempt,
        for metrics; ``make_group_dns`` makes a group's DNS (tests give fakes)."""
        self.runners = runners
        self.ns = ns
        self.emit = emit
        self.published = published
        self.make_group_dns = make_group_dns
        self.groups: dict[str, GroupDns] = {}
        """The registry: the DNS of every group that has one, by group name."""
        self.servers: list[DnsServer] = []
        self.thread: Part | None = None
        """The supervised DNS thread, once it runs (the agent sets it)."""
        self._wake = asyncio.Event()
        self._seen: dict[str, tuple[object, ...]] = {}
        """Each group's ``Core.hosts_key()`` at its last recomputation."""

    def add(self, group: GroupConfig) -> GroupDns | None:
        """Give ``group`` its DNS (None: it has no ``[group.dns]``)."""
        if group.dns is None:
            return None
        name = group.name
        gd = self.make_group_dns(
            group.dns,
            group=name,
            scale=group.load_scale,
            on_event=lambda kind, reason: self.emit(AgentEventKind(kind), name, reason),
            on_publish=lambda which, ok: self.published(name, which, ok),
        )
        self.groups[name] = gd
        self._seen.pop(name, None)
        self._wake.set()
        return gd

    def remove(self, name: str) -> None:
        self.groups.pop(name, None)
        self._seen.pop(name, None)

    def follow(self, name: str, runner: GroupRunner) -> Callable[[], None]:
        """After each input of group ``name``'s core (in its wake-up, not one
        of its own), wake the DNS thread if the group's hosts changed. Returns
        the unsubscribe function (as the probes' and the links' do)."""

        def check() -> None:
            if self._wake.is_set() or name not in self.groups:
                return
            if self._seen.get(name) != runner.core.hosts_key():
                self._wake.set()

        runner.on_pumped = check

        def unsubscribe() -> None:
            runner.on_pumped = None

        return unsubscribe

    async def run(self) -> None:
        """The DNS thread: recompute the answer of each group whose hosts
        changed, then wait ``TICK`` at least, and sleep until a group's hosts
        change again (no wake-up of its own while nothing does). A restarted
        thread recomputes every group once."""
        self._seen.clear()
        while True:
            self._wake.clear()
            for name, gd in list(self.groups.items()):
                runner = self.runners.get(name)
                if runner is None:
                    continue
                key = runner.core.hosts_key()
                if self._seen.get(name) != key:
                    # The answer depends only on what the key covers.
                    self._seen[name] = key
                    gd.refresh(runner.core.view(asyncio.get_running_loop().time()))
            await asyncio.sleep(TICK)
            await self._wake.wait()

    def zones(self) -> list[ZoneData]:
        """The zones of every group with DNS (what the embedded server answers)."""
        stale = self.thread is None or self.thread.state != "running"
        zones = [gd.zone_data(stale=stale) for gd in self.groups.values()]
        return merge_zones(zones, self.ns)

    async def serve(self, listen: tuple[tuple[IP, int], ...]) -> None:
        """Start an embedded server on every ``(address, port)``."""
        for ip, port in listen:
            server = DnsServer((str(ip), port), self.zones)
            await server.start()
            self.servers.append(server)

    async def close(self) -> None:
        for server in self.servers:
            await server.close()
