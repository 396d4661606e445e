"""The guard: never two holders of one address, across partitions and stalls
(issue 13; docs/protocol.md, "The guard").

With ``guard = "none"`` (the default) nothing here runs and the group behaves
as the patent describes. With "majority" or "etcd" every info carries a GUARD
section (rais.core.sections): the sender's *stamp* (its own clock in ms), its
*vote* (the leader it follows, or none), whether it is a leader that may assign
now (*quorate*), the fencing *token* (etcd) and *echoes* (the newest stamp it
heard from each host: a leader echoes every host, a follower its leader).

Three rules, each anchored on a sender's own clock so that network delay cannot
stretch them (only clock *rates* are assumed equal):

1. **Votes are exclusive.** A leader counts a vote for it only until its own
   stamp that the vote echoes plus ``timeout``. A host names a different leader
   only once the newest stamp it echoed of the previous one is ``timeout`` old
   on its own clock (the arrival time bounds the send time). So no vote is ever
   counted by two leaders at once, and with a majority of ``voters`` (or the
   etcd key, whose holders never overlap) at most one leader is quorate at any
   instant.
2. **Leases.** A holder keeps an address only until ``lease`` after its own
   send time of an info that a quorate leader (of the newest token) echoed, and
   that showed the address (or an acquire command carried the echo). A
   quorate leader's own addresses are leased from each instant it is quorate.
3. **Takeover waits.** A leader assigns an address no live host serves only at
   ``max(quorate_since, latest claim) + lease + KERNEL_SLACK``: the latest
   claim is the arrival of the newest info of a now silent host that showed the
   address (or the last send of an acquire to a host that has not answered it).
   Every lease any host can hold on it has run out by then, and the kernel has
   removed it (held addresses carry a kernel lifetime that ends by the lease).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

from rais.core.addr import Addr, fmt, id_key
from rais.core.config import KERNEL_SLACK, CoreConfig
from rais.core.effects import Campaign, EventKind
from rais.core.messages import AddrState, GuardInfo
from rais.core.outbox import Outbox

MASK = 0xFFFFFFFF
_HALF = 0x80000000
_NEVER = -math.inf


def stamp_of(now: float) -> int:
    """A clock reading in milliseconds, modulo 2**32."""
    return int(now * 1000) & MASK


def time_of(stamp: int, now: float) -> float:
    """When (on this clock) a stamp of this clock was taken: at most 49 days ago."""
    return now - ((stamp_of(now) - stamp) & MASK) / 1000.0


def at_least(a: int, b: int) -> bool:
    """Stamp ``a`` is not older than ``b`` (serial-number arithmetic)."""
    return ((a - b) & MASK) < _HALF


@dataclass(frozen=True, slots=True)
class GuardView:
    """The guard as ``Core.view`` shows it."""

    mode: str
    quorate: bool
    """This host leads and may assign now; or (a follower) its leader's newest
    info said it could."""
    votes: int
    """As leader, guard "majority": the voters that name it now, itself included."""
    needed: int
    voters: tuple[Addr, ...]
    vote: Addr | None
    """The leader this host names in its infos (None: none yet)."""
    key_held: bool
    """Guard "etcd": this host holds the group's leader key."""
    token: int
    """The newest fencing token seen (etcd: the leader key's revision)."""
    arbiter: str
    """Guard "etcd", as leader: "reachable", "unreachable" or "" (not asked)."""
    holding: bool
    """On arbiter loss "hold" is in force: nothing new is assigned."""
    lease_left: float | None
    """The shortest lease left on an address this host holds (None: none)."""
    quorate_for: float | None
    """How long this host has led quorate without a break (None: it does not)."""
    on_arbiter_loss: str


class Guard:
    """One host's guard state (the three rules of the module doc)."""

    def __init__(self, c: CoreConfig, out: Outbox, now: float) -> None:
        self.on = c.guard != "none"
        self.mode = c.guard
        self.me = c.host_id
        self.out = out
        self.window = c.timeout
        self.lease = c.lease
        self.loss = c.on_arbiter_loss
        self.voters = c.voters
        self._voter_set = frozenset(c.voters)
        self.needed = len(c.voters) // 2 + 1
        self.vote: Addr | None = None
        self._vote_from = now + c.timeout
        """A new incarnation names nobody before: its previous one's votes lapse."""
        self._named: Addr | None = None
        self._free_at = now + c.timeout
        """When this host may name a leader other than ``_named``."""
        self.heard: dict[Addr, tuple[int, float]] = {}
        """Per host: the newest stamp heard from it and when it arrived."""
        self.ballots: dict[Addr, float] = {}
        """Per host that names this one: until when (this clock) its vote counts."""
        self.quorate_since: float | None = None
        self.leader_quorate = False
        self.token = 0
        self.newest_token = 0
        self.arb_reachable: bool | None = None
        self.arb_held = False
        self.arb_until = _NEVER
        self._hold_set: frozenset[Addr] | None = None
        self._hold_broken = False
        self._key = False
        self.want_key = False
        self.leases: dict[Addr, float] = {}
        """Per held key: until when this host may keep it."""
        self._claim_from: dict[Addr, int] = {}
        """Per held key: the stamp of the first info that showed it held."""
        self.claims: dict[tuple[Addr, Addr], float] = {}
        """(host, address): the arrival of the newest info of ``host`` showing
        ``address`` (or the last send of an acquire to it): rule 3."""
        self._asked: dict[tuple[Addr, Addr], int] = {}
        """(host, address): this leader's stamp of the last info that carried an
        acquire to ``host``; its claim stands until ``host`` echoes a newer one."""
        self.dirty = False
        """A vote came or went since the last ``settle``."""
        self._lapsed = False
        self._lost = False

    # ----------------------------------------------------------- votes, quorum

    def _choose(self, now: float, leader: Addr | None, settled: bool) -> Addr | None:
        want = leader if settled and now >= self._vote_from else None
        if want is None or want == self._named or now >= self._free_at:
            return want
        return None

    def quorate(self, now: float) -> bool:
        """This host, as leader, may assign now (rule 1; always without a guard)."""
        if not self.on:
            return True
        if self.vote != self.me:
            return False
        if self.mode == "majority":
            return self.votes(now) >= self.needed
        if self.arb_held and now < self.arb_until:
            return True
        return self._holding(now)

    def _holding(self, now: float) -> bool:
        """On arbiter loss "hold": every member heard at the loss still names this host."""
        if self.loss != "hold" or self._hold_set is None or self._hold_broken:
            return False
        if self.arb_reachable is not False:
            return False
        return all(self.ballots.get(m, _NEVER) > now for m in self._hold_set)

    def _key_events(self, now: float) -> None:
        """``arbiter-lost`` when the key stops being held (etcd said so, or its
        TTL ran out unrenewed), ``arbiter-regained`` when it is held again."""
        key = self.arb_held and now < self.arb_until
        if key != self._key:
            self._key = key
            if key:
                self.out.event(now, EventKind.ARBITER_REGAINED, None, f"token {self.token}")
            else:
                why = (
                    "etcd unreachable" if self.arb_reachable is False else "the leader key is lost"
                )
                self.out.event(now, EventKind.ARBITER_LOST, None, why)
        if not key:
            self._check_hold(now)

    def _check_hold(self, now: float) -> None:
        """Holding on ends for good once a member heard at the loss stops naming
        this host (until the key is held again)."""
        hold = self._hold_set
        if hold is None or self._hold_broken or self.arb_reachable is not False:
            return
        missing = sorted(fmt(m) for m in hold if self.ballots.get(m, _NEVER) <= now)
        if missing:
            self._hold_broken = True
            why = f"holding on through the arbiter loss ended: {', '.join(missing)} not heard"
            self.out.event(now, EventKind.QUORUM_LOST, None, why)

    def votes(self, now: float) -> int:
        n = sum(1 for v in self.voters if v != self.me and self.ballots.get(v, _NEVER) > now)
        return n + (1 if self.me in self._voter_set and self.vote == self.me else 0)

    # ------------------------------------------------------------------ inputs

    def take(
        self,
        now: float,
        sender: Addr,
        g: GuardInfo | None,
        from_leader: bool,
        served: tuple[tuple[Addr, AddrState], ...],
    ) -> float | None:
        """An info from ``sender`` with guard section ``g``, showing it serving
        ``served``: its vote, its claims (rule 3) and, from this host's leader,
        the lease renewal. Returns the lease an acquire in this info would
        start with (None: this info may not give acquires)."""
        if not self.on:
            return math.inf
        keys = [a for a, _ in served]
        if g is None:
            self.ballots.pop(sender, None)
            self.observe(now, sender, keys, None)
            if from_leader:
                self.leader_quorate = False
            return None
        prev = self.heard.get(sender)
        if prev is not None and not at_least(g.stamp, prev[0]):
            return None  # overtaken by a newer info of the same sender
        self.heard[sender] = (g.stamp, now)
        echo = None
        for host, stamp in g.echoes:
            if host == self.me:
                echo = stamp
                break
        self.observe(now, sender, keys, echo)
        if g.vote == self.me and echo is not None:
            until = time_of(echo, now) + self.window
            if sender not in self.ballots or self.ballots[sender] <= now:
                self.dirty = True  # a vote more: maybe quorate now
            self.ballots[sender] = until
        elif self.ballots.pop(sender, None) is not None:
            self.dirty = True
        if g.token > self.newest_token:
            self.newest_token = g.token
        if not from_leader:
            return None
        self.leader_quorate = g.quorate and g.token >= self.newest_token
        if not self.leader_quorate or echo is None:
            return None
        until = time_of(echo, now) + self.lease
        for key, since in self._claim_from.items():
            if at_least(echo, since) and self.leases.get(key, _NEVER) < until:
                self.leases[key] = until
        if self._lapsed and until > now:
            self._lapsed = False
            self.out.event(now, EventKind.QUORUM_REGAINED, None, f"leader {fmt(sender)}")
        return until

    def observe(self, now: float, host: Addr, served: list[Addr], echo: int | None) -> None:
        """Rule 3's record: ``host``'s newest info shows it holding ``served``;
        ``echo`` is the stamp of this host's it echoes (None: none)."""
        if not self.on:
            return
        claims = self.claims
        for key in [k for k in claims if k[0] == host and k[1] not in served]:
            asked = self._asked.get(key)
            if asked is None or (echo is not None and at_least(echo, asked)):
                del claims[key]
                self._asked.pop(key, None)
        for address in served:
            claims[(host, address)] = now
            self._asked.pop((host, address), None)

    def acquiring(self, now: float, host: Addr, address: Addr, stamp: int) -> None:
        """This leader sends an acquire of ``address`` to ``host`` in its info of ``stamp``."""
        if self.on:
            self.claims[(host, address)] = now
            self._asked[(host, address)] = stamp

    def arbiter(
        self, now: float, reachable: bool, held: bool, token: int, until: float, members: list[Addr]
    ) -> None:
        """The driver's report on the etcd leader key (``Core.arbiter_state``)."""
        if self.mode != "etcd":
            return
        had = self.arb_held and now < self.arb_until
        if not reachable and self.arb_reachable is not False and (had or self.quorate(now)):
            # What "hold" must keep hearing name it: every host of the group it
            # has ever heard (a host it no longer hears may reach etcd, take the
            # key and lead on the far side).
            self._hold_set = frozenset(members)
            self._hold_broken = False
        if reachable:
            self._hold_set = None
        self.arb_reachable = reachable
        self.arb_held = held
        self.arb_until = until if held else _NEVER
        if held:
            self.token = token
            if token > self.newest_token:
                self.newest_token = token
        if held and reachable:
            self._hold_set = None
            self._hold_broken = False

    # ------------------------------------------------------------------ output

    def section(
        self,
        now: float,
        leader: Addr | None,
        settled: bool,
        is_leader: bool,
        served: list[Addr],
        live: list[Addr],
    ) -> GuardInfo | None:
        """The GUARD section of the info this host sends now (None: no guard);
        records what it says (rules 1 and 2)."""
        if not self.on:
            return None
        stamp = stamp_of(now)
        vote = self.vote = self._choose(now, leader, settled)
        if vote is not None:
            self._named = vote
            if vote == self.me:
                self._free_at = now
            else:
                heard = self.heard.get(vote)
                self._free_at = (heard[1] if heard is not None else now) + self.window
        for key in served:
            self._claim_from.setdefault(key, stamp)
        for key in [k for k in self._claim_from if k not in served]:
            del self._claim_from[key]
        if is_leader:
            ids = sorted(live, key=id_key)
        else:
            ids = [vote] if vote is not None and vote != self.me else []
        echoes = tuple((h, self.heard[h][0]) for h in ids if h in self.heard)
        quorate = is_leader and self.quorate(now)
        return GuardInfo(stamp, vote, quorate, self.token if quorate else 0, echoes)

    # ------------------------------------------------------------------- leader

    def settle(
        self,
        now: float,
        is_leader: bool,
        settled: bool,
        leader: Addr | None,
        held: Collection[Addr],
        leaving: bool,
    ) -> bool:
        """After every input: the vote to name, the quorum's transitions and
        events, a quorate leader's own leases, the key campaign. True if the
        quorum changed (the leader then recomputes and tells the group)."""
        if not self.on:
            return False
        was = self.quorate_since is not None
        vote = self._choose(now, leader, settled)
        changed = vote != self.vote
        self.dirty = False
        self.vote = vote
        if self.mode == "etcd":
            self._key_events(now)
        q = is_leader and self.quorate(now)
        if q:
            for key in held:
                self.leases[key] = now + self.lease
            if self.quorate_since is None:
                self.quorate_since = now
        else:
            self.quorate_since = None
        if q != was:
            changed = True
            if self.mode == "majority" and is_leader and (q or was):
                why = f"{self.votes(now)} of {len(self.voters)} voters, {self.needed} needed"
                if not q:
                    self._lost = True
                    self.out.event(now, EventKind.QUORUM_LOST, None, why)
                elif self._lost:
                    self._lost = False
                    self.out.event(now, EventKind.QUORUM_REGAINED, None, why)
        if not is_leader:
            self._lost = False
        want = self.mode == "etcd" and is_leader and settled and vote == self.me and not leaving
        if want != self.want_key:
            self.want_key = want
            self.out.items.append(Campaign(want))
        return changed

    def free_at(self, address: Addr) -> float:
        """Rule 3: when this quorate leader may give ``address`` to a host."""
        if not self.on:
            return _NEVER
        since = self.quorate_since if self.quorate_since is not None else math.inf
        latest = since
        for (_, a), when in self.claims.items():
            if a == address and when > latest:
                latest = when
        return latest + self.lease + KERNEL_SLACK

    def hand_over_at(self) -> float:
        """Before then this quorate leader begins no move or failback: what it
        released would wait for rule 3 unserved."""
        if not self.on:
            return _NEVER
        since = self.quorate_since if self.quorate_since is not None else math.inf
        return since + self.lease + KERNEL_SLACK

    # ------------------------------------------------------------------ holder

    def lapsed(self, now: float, held: Collection[Addr]) -> list[Addr]:
        """The held keys whose lease ran out (the caller releases them)."""
        if not self.on:
            return []
        gone = [k for k in held if self.leases.get(k, _NEVER) <= now]
        if gone and not self._lapsed:
            self._lapsed = True
            why = f"no quorate leader covered {fmt(gone[0])} for {self.lease:g}s"
            self.out.event(now, EventKind.QUORUM_LOST, None, why)
        return gone

    def leased(self, key: Addr, until: float) -> None:
        if self.on:
            self.leases[key] = until

    def forget(self, key: Addr) -> None:
        self.leases.pop(key, None)

    def lease_left(self, key: Addr, now: float) -> float | None:
        if not self.on:
            return None
        return self.leases.get(key, now) - now

    def next_deadline(self, now: float, held: Collection[Addr], is_leader: bool) -> float | None:
        if not self.on:
            return None
        times = [self.leases[k] for k in held if k in self.leases]
        if self.vote != self._named and self._free_at > now:
            times.append(self._free_at)
        if now < self._vote_from:
            times.append(self._vote_from)
        if is_leader:
            times.extend(t for t in self.ballots.values() if t > now)
            if self.arb_held and self.arb_until > now:
                times.append(self.arb_until)
        return min(times) if times else None

    def prune(self, now: float) -> None:
        """Drop claims that no longer hold anything back."""
        horizon = now - self.lease - KERNEL_SLACK
        for key in [k for k, t in self.claims.items() if t < horizon]:
            del self.claims[key]
            self._asked.pop(key, None)

    def view(self, now: float, held: Collection[Addr]) -> GuardView:
        lefts = [self.leases[k] - now for k in held if k in self.leases]
        since = self.quorate_since
        return GuardView(
            mode=self.mode,
            quorate=self.quorate(now) if self.vote == self.me else self.leader_quorate,
            votes=self.votes(now) if self.mode == "majority" else 0,
            needed=self.needed if self.mode == "majority" else 0,
            voters=self.voters,
            vote=self.vote,
            key_held=self.arb_held and now < self.arb_until,
            token=self.newest_token,
            arbiter=""
            if self.arb_reachable is None
            else ("reachable" if self.arb_reachable else "unreachable"),
            holding=self.loss == "hold"
            and self._hold_set is not None
            and not self._hold_broken
            and not (self.arb_held and now < self.arb_until),
            lease_left=min(lefts) if lefts else None,
            quorate_for=None if since is None else now - since,
            on_arbiter_loss=self.loss,
        )
