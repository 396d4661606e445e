"""The agent's status as typed, frozen views, and the one function that renders
them to ``GET /v1/status``'s JSON.

The status is built from the cores' read models (``rais.admin.status.group_status``
from a ``CoreView``), the supervisor's parts (``Part.status``), each group's
DNS (``GroupDns.status``) and the tests' states (``rais.admin.agent_status``). The
metrics read these views; the admin API, the dashboard's stream and ``rais
dev`` turn them into JSON at their edge with :func:`status_json`. Addresses and
host ids are held in their text form, as the JSON shows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

PartState = Literal["running", "restarting", "failed", "stopped"]


@dataclass(frozen=True, slots=True)
class ServedStatus:
    """One address a host serves, and its state there."""

    address: str
    state: str
    """acquiring, online or releasing."""


@dataclass(frozen=True, slots=True)
class HostStatus:
    """One host of a group as this host knows it."""

    id: str
    control: tuple[str, ...]
    live: bool
    ok: bool
    quiesced: bool
    spare: bool
    observer: bool
    leaving: bool
    load: int
    capacity: int
    utilization: int
    """rais.core.utilization on the group's load_scale."""
    preferred: str | None
    """Its preferred address with its prefix length (None: a spare or an observer)."""
    served: tuple[ServedStatus, ...]
    last_heard_s: float | None
    wire_versions: tuple[int, ...] = (1,)
    """The wire versions it speaks (a host of the version-1 release: 1 only)."""
    features: tuple[str, ...] = ()
    """The features it announces."""
    paused_s: float | None = None
    """Seconds left of the pause it announced (``rais pause``: it restarts in
    place and keeps its addresses meanwhile); None: not pausing."""
    preferred_set: tuple[str, ...] = ()
    """With an address set: every address of it, with prefix, key first
    (``preferred`` is the key); empty for a single address."""


@dataclass(frozen=True, slots=True)
class AddressStatus:
    """One service address of a group."""

    address: str
    """With its prefix length when it is a row of the table; bare otherwise."""
    preferred: str | None
    holders: tuple[str, ...]
    state: str
    """online, acquiring, releasing, unassigned or duplicate."""
    orphan_s: float | None
    set: tuple[str, ...] = ()
    """With an address set (``address`` is its key): every address of it, with
    prefix, key first; empty for a single address."""


@dataclass(frozen=True, slots=True)
class SetStatus:
    """An address set this host holds, address by address."""

    key: str
    state: str
    """The key's state: acquiring, online or releasing."""
    up: tuple[str, ...]
    """Every address of the set configured here, the key first while it is online."""
    adding: tuple[str, ...]
    removing: tuple[str, ...]
    waiting: tuple[str, ...]
    """Addresses of the set not brought (yet)."""
    why: str
    """Why they wait ("" if none wait)."""


@dataclass(frozen=True, slots=True)
class TestStatus:
    """One of this host's tests of a group."""

    __test__: ClassVar[bool] = False  # not a pytest test class

    name: str
    ok: bool | None
    """None: pending (no result yet)."""
    reason: str
    since_s: float | None


@dataclass(frozen=True, slots=True)
class PublisherStatus:
    """One DNS publisher of a group."""

    kind: str
    """update or zonefile."""
    publisher: str
    """Who publishes: leader or self."""
    active: bool
    ok: int
    failed: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class DnsStatus:
    """A group's DNS answer and publishers."""

    name: str
    warming: bool
    serial: int
    addresses: tuple[str, ...]
    shed: tuple[str, ...]
    publishers: tuple[PublisherStatus, ...]


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """A group's service link, as this host tracks it (``track_link``)."""

    interface: str
    tracked: bool
    state: str
    """up, down, holding (the carrier is back, the hold-down runs) or untracked."""
    reason: str
    """The watcher's last report, e.g. "eth0: no carrier"."""
    since_s: float | None
    """Seconds since the carrier last changed (None: untracked)."""
    hold_left_s: float | None
    """Seconds left of the hold-down (None: none running)."""


@dataclass(frozen=True, slots=True)
class GuardStatus:
    """A group's guard as this host sees it (rais.core.guard.GuardView)."""

    mode: str
    """none, majority or etcd."""
    quorate: bool | None
    """As leader: it may assign now; as follower: its leader said so in its
    last info (None: no guard)."""
    votes: int
    """Guard majority, as leader: the voters that name it now, itself included."""
    needed: int
    voters: tuple[str, ...]
    vote: str | None
    """The leader this host names in its infos (None: none yet)."""
    key_held: bool
    """Guard etcd: this host holds the group's leader key."""
    token: int
    """The newest fencing token seen (the leader key's create revision)."""
    arbiter: str
    """Guard etcd, as leader: reachable, unreachable or "" (not asked)."""
    holding: bool
    """on_arbiter_loss "hold" is in force: etcd is lost, the key's lease has run
    out, everything stays where it is and nothing new is assigned."""
    lease_left_s: float | None
    """The shortest lease left on an address this host holds (None: none)."""
    quorate_for_s: float | None
    """How long this host has led quorate without a break (None: it does not)."""
    on_arbiter_loss: str


@dataclass(frozen=True, slots=True)
class PartStatus:
    """One supervised part of the agent."""

    name: str
    group: str | None
    essential: bool
    state: PartState
    restarts: int
    last_error: str
    since_s: float


@dataclass(frozen=True, slots=True)
class GroupStatus:
    """One group as this host sees it."""

    name: str
    host: str
    leader: str | None
    is_leader: bool
    settled: bool
    ok: bool
    quiesced: bool
    load_scale: int
    tests: tuple[TestStatus, ...]
    hosts: tuple[HostStatus, ...]
    """Live hosts first, each part by id text."""
    addresses: tuple[AddressStatus, ...]
    """By address text."""
    expired: tuple[str, ...]
    dropped: Mapping[str, int]
    counters: Mapping[str, int]
    dns: DnsStatus | None = None
    wire_version: int = 1
    """The wire version this host sends in now."""
    common_features: tuple[str, ...] = ()
    """The features every live host announces: only these are used."""
    link: LinkStatus | None = None
    """This host's service link for the group (None: not known here)."""
    sets: tuple[SetStatus, ...] = ()
    """The address sets this host holds (those with more than one address)."""
    guard: GuardStatus | None = None
    """The group's guard (issue 13; None: not known here)."""

    def me(self) -> HostStatus | None:
        """This host's own entry."""
        return next((h for h in self.hosts if h.id == self.host), None)


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """The whole status of one agent."""

    version: str
    host: str
    epoch: int
    parts: tuple[PartStatus, ...]
    groups: tuple[GroupStatus, ...]


def status_json(status: AgentStatus) -> dict[str, Any]:
    """``GET /v1/status``'s JSON-ready dict (the only rendering of the status)."""
    return {
        "version": status.version,
        "host": status.host,
        "epoch": status.epoch,
        "parts": [_part(p) for p in status.parts],
        "groups": [_group(g) for g in status.groups],
    }


def _part(p: PartStatus) -> dict[str, Any]:
    return {
        "name": p.name,
        "group": p.group,
        "essential": p.essential,
        "state": p.state,
        "restarts": p.restarts,
        "last_error": p.last_error,
        "since_s": p.since_s,
    }


def _group(g: GroupStatus) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": g.name,
        "host": g.host,
        "leader": g.leader,
        "is_leader": g.is_leader,
        "settled": g.settled,
        "ok": g.ok,
        "quiesced": g.quiesced,
        "load_scale": g.load_scale,
        "tests": [
            {"name": t.name, "ok": t.ok, "reason": t.reason, "since_s": t.since_s} for t in g.tests
        ],
        "hosts": [_host(h) for h in g.hosts],
        "addresses": [
            {
                "address": a.address,
                "preferred": a.preferred,
                "holders": list(a.holders),
                "state": a.state,
                "orphan_s": a.orphan_s,
                **({"set": list(a.set)} if a.set else {}),
            }
            for a in g.addresses
        ],
        "expired": list(g.expired),
        "dropped": dict(g.dropped),
        "counters": dict(g.counters),
    }
    if g.dns is not None:
        out["dns"] = _dns(g.dns)
    out["wire_version"] = g.wire_version
    out["common_features"] = list(g.common_features)
    out["link"] = None if g.link is None else _link(g.link)
    if g.sets:
        out["sets"] = [
            {
                "key": s.key,
                "state": s.state,
                "up": list(s.up),
                "adding": list(s.adding),
                "removing": list(s.removing),
                "waiting": list(s.waiting),
                "why": s.why,
            }
            for s in g.sets
        ]
    out["guard"] = None if g.guard is None else _guard(g.guard)
    return out


def _guard(g: GuardStatus) -> dict[str, Any]:
    return {
        "mode": g.mode,
        "quorate": g.quorate,
        "votes": g.votes,
        "needed": g.needed,
        "voters": list(g.voters),
        "vote": g.vote,
        "key_held": g.key_held,
        "token": g.token,
        "arbiter": g.arbiter,
        "holding": g.holding,
        "lease_left_s": g.lease_left_s,
        "quorate_for_s": g.quorate_for_s,
        "on_arbiter_loss": g.on_arbiter_loss,
    }


def _link(link: LinkStatus) -> dict[str, Any]:
    return {
        "interface": link.interface,
        "tracked": link.tracked,
        "state": link.state,
        "reason": link.reason,
        "since_s": link.since_s,
        "hold_left_s": link.hold_left_s,
    }


def _host(h: HostStatus) -> dict[str, Any]:
    return {
        "id": h.id,
        "control": list(h.control),
        "live": h.live,
        "ok": h.ok,
        "quiesced": h.quiesced,
        "spare": h.spare,
        "observer": h.observer,
        "leaving": h.leaving,
        "load": h.load,
        "capacity": h.capacity,
        "utilization": h.utilization,
        "preferred": h.preferred,
        "served": [{"address": s.address, "state": s.state} for s in h.served],
        "last_heard_s": h.last_heard_s,
        "paused_s": h.paused_s,
        "wire_versions": list(h.wire_versions),
        "features": list(h.features),
        **({"preferred_set": list(h.preferred_set)} if h.preferred_set else {}),
    }


def _dns(d: DnsStatus) -> dict[str, Any]:
    return {
        "name": d.name,
        "warming": d.warming,
        "serial": d.serial,
        "addresses": list(d.addresses),
        "shed": list(d.shed),
        "publishers": {
            p.kind: {
                "publisher": p.publisher,
                "active": p.active,
                "ok": p.ok,
                "failed": p.failed,
                "last_error": p.last_error,
            }
            for p in d.publishers
        },
    }
