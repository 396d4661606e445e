"""One group's DNS thread: from the core's shared state to the advertised set,
the embedded server's zone data and the external publishers.

``refresh(core)`` (called every 100 ms by the agent, and never on the
heartbeat path's critical part: it is a pure computation) builds the host
views, runs :func:`rais.dns.zone.advertise` with the previous answer for
hysteresis and, when the set changed, bumps the serial and hands the set to
the publishers this host runs: a publisher with ``publisher = "leader"``
publishes only while this host leads the group; ``"self"`` always (for a
designated observer, e.g. on the DNS server's host).

Warm-up (issue 10): until the core is *settled* (it has heard the group for
one full ``timeout`` since it started listening; the same predicate that
lets a host lead) nothing is computed: no answer, no history for the
hysteresis, no publish, and the embedded server leaves the group's names
unanswered (:attr:`ZoneData.warming`). The first answer is computed from a
complete view with no history (only the high mark applies). A host only leads
once settled, so a leader's first publish is always such an answer; a
follower that takes over has computed answers all along and keeps that
history, so the hysteresis never drops a host it saw advertised.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import dns.name

from rais.admin.status_view import DnsStatus, PublisherStatus
from rais.base.ip import IP
from rais.core.view import CoreView
from rais.dns.config import GroupDnsConfig, Publisher
from rais.dns.server import ZoneData
from rais.dns.update import UpdatePublisher
from rais.dns.views import host_label, views
from rais.dns.zone import ZoneAnswer, ZonePolicy, advertise, serial_next
from rais.dns.zonefile import ZoneFilePublisher

EventHook = Callable[[str, str], None]
"""(kind, reason): "dns-published" or "dns-failed"."""


class GroupDns:
    def __init__(
        self,
        config: GroupDnsConfig,
        *,
        group: str,
        scale: int,
        on_event: EventHook,
        clock: Callable[[], float] = time.time,
        on_publish: Callable[[str, bool], None] | None = None,
    ) -> None:
        """``on_publish(publisher, ok)``: every publish attempt's outcome
        ("update" or "zonefile"), for metrics."""
        self.on_publish = on_publish or (lambda _w, _ok: None)
        self.config = config
        self.group = group
        self.policy = ZonePolicy(
            scale=scale,
            high=config.high,
            low=config.low,
            min_addresses=config.min_addresses,
            when_short=config.when_short,
        )
        self.on_event = on_event
        self.clock = clock
        self.answer: ZoneAnswer | None = None
        self.hosts: dict[str, tuple[IP, ...]] = {}
        self.serial = 0
        self.origin = dns.name.from_text(config.zone)
        self.name = dns.name.from_text(config.name)
        self.leading = False
        self.publishers: list[tuple[Publisher, UpdatePublisher | ZoneFilePublisher]] = []
        if config.update is not None:
            u = config.update
            self.publishers.append(
                (
                    u.publisher,
                    UpdatePublisher(
                        (str(u.server[0]), u.server[1]),
                        u.zone,
                        config.name,
                        config.ttl,
                        u.key_name,
                        u.secret_b64,
                        u.algorithm,
                        timeout=u.timeout,
                        on_result=self._result("update"),
                    ),
                )
            )
        if config.zonefile is not None:
            z = config.zonefile
            Path(z.path).parent.mkdir(parents=True, exist_ok=True)
            self.publishers.append(
                (
                    z.publisher,
                    ZoneFilePublisher(
                        z.path,
                        config.zone,
                        config.name,
                        config.ttl,
                        z.reload,
                        ns=z.ns,
                        minimum=config.negative_ttl,
                        on_result=self._result("zonefile"),
                    ),
                )
            )

    def _result(self, which: str) -> Callable[[bool, str], None]:
        def hook(ok: bool, detail: str) -> None:
            self.on_publish(which, ok)
            if not ok:
                self.on_event("dns-failed", f"{which}: {detail}")

        return hook

    def runs(self) -> list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]]:
        """Each publisher's long-lived task, by kind ("update", "zonefile"), for
        the agent to run under supervision."""
        return [(_kind(pub), pub.run) for _, pub in self.publishers]

    async def run(self) -> None:
        """The publishers' tasks; runs until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for _, run in self.runs():
                tg.create_task(run())

    @property
    def warming(self) -> bool:
        """No answer yet: the host has not heard the group for one timeout."""
        return self.answer is None

    def refresh(self, cv: CoreView) -> bool:
        """Recompute the answer from the core's read model; True if it changed.
        Does nothing while the core is not settled (warm-up)."""
        if not cv.settled:
            return False
        hosts = views(cv)
        previous = self.answer.advertised if self.answer is not None else None
        answer = advertise(hosts, self.policy, previous)
        was_hosts = self.hosts
        self.hosts = {h.id: h.entry() for h in hosts if h.eligible and h.preferred is not None}
        was_leading, self.leading = self.leading, cv.is_leader
        changed = self.answer is None or answer.addresses != self.answer.addresses
        self.answer = answer
        if changed:
            self.serial = serial_next(self.serial, int(self.clock()))
            shown = ", ".join(map(str, answer.addresses)) or "no addresses"
            shed = f" (shed for load: {', '.join(map(str, sorted(answer.shed, key=str)))})"
            self.on_event(
                "dns-published",
                f"{self.config.name} {shown}{shed if answer.shed else ''}; serial {self.serial}",
            )
        due = changed or self.leading != was_leading
        names = self.hosts != was_hosts and self.config.host_names
        for who, pub in self.publishers:
            if not (who == "self" or self.leading):
                continue
            if isinstance(pub, ZoneFilePublisher):
                if due or names:  # the zone the embedded server answers from
                    pub.publish(answer.addresses, self._host_names())
            elif due:
                pub.publish(answer.addresses)
        return changed

    def _host_names(self) -> dict[dns.name.Name, tuple[IP, ...]]:
        """The per-host names with their addresses (none without ``host_names``)."""
        if not self.config.host_names:
            return {}
        return {
            dns.name.Name((host_label(host_id).encode(),)).concatenate(self.name): addrs
            for host_id, addrs in self.hosts.items()
        }

    def zone_data(self, *, stale: bool = False) -> ZoneData:
        """What the embedded server answers for this group (while warming up,
        or with ``stale`` while the DNS thread is down and the answer no longer
        follows the group: nothing below the group's name)."""
        if self.answer is None or stale:
            return ZoneData(
                self.origin,
                self.serial,
                (dns.name.from_text("localhost."),),
                {},
                ttl=self.config.ttl,
                negative_ttl=self.config.negative_ttl,
                warming=(self.name,),
            )
        names = {self.name: self.answer.addresses, **self._host_names()}
        return ZoneData(
            self.origin,
            self.serial,
            (dns.name.from_text("localhost."),),
            names,
            ttl=self.config.ttl,
            negative_ttl=self.config.negative_ttl,
        )

    def status(self) -> DnsStatus:
        a = self.answer
        return DnsStatus(
            name=self.config.name,
            warming=self.warming,
            serial=self.serial,
            addresses=tuple(str(x) for x in a.addresses) if a else (),
            shed=tuple(sorted(str(x) for x in a.shed)) if a else (),
            publishers=tuple(
                PublisherStatus(
                    kind=_kind(pub),
                    publisher=who,
                    active=who == "self" or self.leading,
                    ok=pub.stats.ok,
                    failed=pub.stats.failed_total,
                    last_error=pub.stats.last_error,
                )
                for who, pub in self.publishers
            ),
        )


def _kind(pub: UpdatePublisher | ZoneFilePublisher) -> str:
    return "update" if isinstance(pub, UpdatePublisher) else "zonefile"


def merge_zones(zones: list[ZoneData], ns: tuple[str, ...]) -> list[ZoneData]:
    """One ZoneData per origin: groups sharing a zone share its answers. A zone
    whose every group is warming up is warming as a whole (apex included: this
    host knows nothing worth serving in it yet)."""
    by: dict[dns.name.Name, list[ZoneData]] = {}
    for z in zones:
        by.setdefault(z.origin, []).append(z)
    out = []
    ns_names = tuple(dns.name.from_text(n) for n in ns)
    for origin, parts in by.items():
        names: dict[dns.name.Name, tuple[IP, ...]] = {}
        warming: list[dns.name.Name] = []
        for z in parts:
            names.update(z.names)
            warming.extend(z.warming)
        if all(z.warming for z in parts):
            warming.append(origin)
        out.append(
            ZoneData(
                origin,
                max(z.serial for z in parts),
                ns_names,
                names,
                ttl=min(z.ttl for z in parts),
                negative_ttl=min(z.negative_ttl for z in parts),
                warming=tuple(warming),
            )
        )
    return out
