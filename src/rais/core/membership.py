"""Who is in the group, who is live, and who leads (patent steps 450-452, 602-606).

A host is live while its last info is younger than ``timeout``; a host that
announces it is leaving is gone at once. The leader is the live host with the
lowest id (IPv4 before IPv6, then numerically) among those that are not
observers, not leaving, and *settled* (have listened for one ``timeout`` since
they started, so that a host that has just booted does not issue commands
before it has heard the group). Every host computes the leader from its own
view; nothing is negotiated.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from rais.core.addr import Addr, id_key
from rais.core.hosts import can_lead
from rais.core.messages import HostEntry
from rais.core.view import MemberView


@dataclass(slots=True)
class HostRecord:
    """What this host knows of another host."""

    entry: HostEntry
    last_heard: float
    live: bool
    lost_at: float | None = None


@dataclass(frozen=True, slots=True)
class Heard:
    """What changed when an info arrived from another host."""

    joined: bool
    left: bool
    changed: bool
    previous: HostEntry | None


_SAME = Heard(joined=False, left=False, changed=False, previous=None)
"""Returned for the common case: a live host's info with nothing new in it."""


def same_state(a: HostEntry, b: HostEntry) -> bool:
    """True if the two entries agree on everything the leader decides on."""
    return (
        a.served == b.served
        and a.ok == b.ok
        and a.quiesced == b.quiesced
        and a.leaving == b.leaving
        and a.settled == b.settled
        and a.observer == b.observer
        and a.preferred == b.preferred
        and a.extras == b.extras
        and a.versions == b.versions
        and a.features == b.features
    )


class Membership:
    """The host information database of one host (figure 2B, 'other host information')."""

    __slots__ = ("_by_age", "records", "self_id", "timeout")

    def __init__(self, self_id: Addr, timeout: float) -> None:
        self.self_id = self_id
        self.timeout = timeout
        self.records: dict[Addr, HostRecord] = {}
        # Live hosts, oldest last_heard first: the head is the next to expire.
        self._by_age: OrderedDict[Addr, None] = OrderedDict()

    def heard(self, now: float, entry: HostEntry) -> Heard:
        """Record an info from ``entry.id``."""
        rec = self.records.get(entry.id)
        if rec is None:
            self.records[entry.id] = HostRecord(entry, now, not entry.leaving)
            if not entry.leaving:
                self._by_age[entry.id] = None
            return Heard(joined=not entry.leaving, left=False, changed=True, previous=None)
        previous = rec.entry
        rec.entry = entry
        rec.last_heard = now
        if entry.leaving:
            was_live = rec.live
            if was_live:
                rec.live = False
                rec.lost_at = now
                del self._by_age[entry.id]
            return Heard(joined=False, left=was_live, changed=was_live, previous=previous)
        if not rec.live:
            rec.live = True
            rec.lost_at = None
            self._by_age[entry.id] = None
            return Heard(joined=True, left=False, changed=True, previous=previous)
        self._by_age.move_to_end(entry.id)
        if previous is entry or same_state(previous, entry):
            return _SAME
        return Heard(joined=False, left=False, changed=True, previous=previous)

    def next_expiry(self) -> float | None:
        for host in self._by_age:
            return self.records[host].last_heard + self.timeout
        return None

    def expire(self, now: float) -> list[Addr]:
        """Mark silent hosts dead (patent step 606); return their ids."""
        gone: list[Addr] = []
        while self._by_age:
            host = next(iter(self._by_age))
            rec = self.records[host]
            # the same sum as next_expiry(): now - timeout can round the other way
            if rec.last_heard + self.timeout > now:
                break
            del self._by_age[host]
            rec.live = False
            rec.lost_at = now
            gone.append(host)
        return gone

    def live(self) -> list[HostEntry]:
        """Entries of the live hosts other than this one."""
        return [self.records[h].entry for h in self._by_age]

    def views(self, now: float) -> tuple[MemberView, ...]:
        """Every host heard, in the order first heard (rais.core.view)."""
        return tuple(MemberView(r.entry, r.live, now - r.last_heard) for r in self.records.values())

    def live_ids(self) -> list[Addr]:
        return list(self._by_age)

    def is_live(self, host: Addr) -> bool:
        rec = self.records.get(host)
        return rec is not None and rec.live

    def elect(self, own: HostEntry) -> Addr | None:
        """The leader from this host's view, by a full scan."""
        best: Addr | None = own.id if can_lead(own) else None
        for host in self._by_age:
            if (best is None or id_key(host) < id_key(best)) and can_lead(self.records[host].entry):
                best = host
        return best

    def update_leader(
        self,
        own: HostEntry,
        leader: Addr | None,
        *,
        entry: HostEntry | None = None,
        gone: list[Addr] | None = None,
    ) -> Addr | None:
        """The leader after a change from ``leader`` (the core keeps it), without
        a full scan where one is not needed: ``entry`` is a host just heard
        whose ability to lead may have changed, ``gone`` are hosts no longer live."""
        if leader is not None and (
            (gone is not None and leader in gone)
            or (entry is not None and entry.id == leader and not can_lead(entry))
            or (leader == own.id and not can_lead(own))
        ):
            return self.elect(own)
        for cand in (entry, own):
            if (
                cand is not None
                and can_lead(cand)
                and (cand.id == own.id or self.is_live(cand.id))
                and (leader is None or id_key(cand.id) < id_key(leader))
            ):
                leader = cand.id
        return leader
