"""The invariant checker (I1-I8, S1-S2, L1, P1), run by the engine after every step.

I1  once faults stop, within timeout + 2 x heartbeat every valid service address
    is online on exactly one live, OK host if an eligible host exists, and a
    "cannot assign" event was raised otherwise;
I2  an address is never acquired by a quiesced or not-OK host (checked by the
    engine when the Acquire effect appears);
I3  two hosts that hear each other never hold the same address for longer than
    2 x heartbeat (plus the network and action delays) after they hear each
    other again (sim/duplicates.py);
I4  a returned preferred host gets its address back; an orphan is invalidated
    after orphan_timeout;
I5  a bad or replayed datagram changes nothing (checked by sim/inject.py at
    each injection, reported to the checker);
L1  a host whose service link lost its carrier holds nothing once its
    releases have completed, and acquires nothing until the hold-down after
    the carrier's return is over (its addresses are judged by I1 like any
    not-OK host's);
I6  when I1 is judged, every live member's DNS thread (rais.dns.zone.advertise
    over its own view of the group) advertises the same set: exactly the
    preferred addresses of the up, OK, not quiesced hosts that hold them (no
    orphan, no spare, no failed or quiesced host's address).
I7, I8  with a guard: never two holders anywhere; a side with a majority
    (or etcd) serves every address (sim/guardcheck.py); I1's bound is then
    the guard's;
S1, S2  address sets judged as units (sim/sets.py);
P1  while a host is stopped in place after ``rais pause`` and its addresses'
    kernel lifetime lasts, no other host acquires an address it holds, and its
    new process, back in time, holds them all (sim/pauses.py).

When I1 and I6 are judged: timeout + 2 x heartbeat after the last fault, or the
end of the last disturbance. A member can only know another host's state as of
the last info it got from it, so under loss the engine counts as a disturbance
the time while any receiver is *behind* on a sender: it lost a datagram that
carried news (or one after which it might time the sender out) and has not yet
received a datagram sent after it (sim/hearing.py). A copy lost while another
arrived, or a lost repeat of what the receiver already has, changes nothing any
member knows and does not delay the judgement; otherwise, at 8 or 32 hosts with
background loss, I1 and I6 would never be judged (issue 10).

Validity, as the simulator sees it: the address of a host that is up, OK and
not quiesced is valid; otherwise it stays valid for orphan_timeout after it was
last held by its preferred host, and is invalid after that. Addresses within
``slack`` of that boundary are not judged (hosts see it a little earlier or
later than the simulator, by up to one timeout).

The checker reads the world (sim/world.py) and never changes it. It is told
of every fault through one method, ``fault(now, act)``, called just before the
world applies it; of what the engine sees happen through ``host_up``,
``host_down``, ``held``, ``unheld``, ``cannot_assign``, ``delivered``, ``lost``
and ``violate``; and it runs its checks in ``step`` and ``deadline``.
"""

from __future__ import annotations

import ipaddress

from rais.base.ip import sorted_ips
from rais.core.addr import Addr, fmt
from rais.core.hosts import eligible, fit
from rais.core.messages import Datagram, ReqOp
from rais.core.requests import winning
from rais.dns.views import views
from rais.dns.zone import ZonePolicy, advertise
from rais.sim.duplicates import Duplicates
from rais.sim.faults import FaultAction
from rais.sim.guardcheck import GuardJudge
from rais.sim.hearing import Hearing
from rais.sim.knowers import Knowers
from rais.sim.network import TICK
from rais.sim.params import Violation
from rais.sim.pauses import PauseJudge
from rais.sim.sets import SetJudge
from rais.sim.world import World


def world_has_sets(world: World) -> bool:
    return bool(world.extras)


_DNS_POLICY = ZonePolicy(min_addresses=0)

DISTURBANCES = (
    "partition",
    "loss",
    "latency",
    "drained",
    "behind",
    "pause",
    "lapse",
    "stall",
    "etcd",
    "deaf",
)
"""Faults that last: I1 is judged from their end. Crashes, leaves, failed tests,
quiesce and a cut control network are states the group must converge under. A
receiver being behind on a sender after a lost datagram (sim/hearing.py) also
lasts, until it has caught up ('behind+' and 'behind-')."""

_UNFIT = ("crash+", "leave+", "test+", "quiesce+", "lapse+", "link+")
_FIT = ("boot", "crash-", "leave-", "test-", "quiesce-", "linkup-")


class Checker:
    def __init__(self, world: World) -> None:
        self.world = world
        p = world.params
        self.hb = p.heartbeat
        self.timeout = p.effective_timeout
        self.bound = self.timeout + 2 * self.hb
        self.violations: list[Violation] = []
        self.convergences: list[float] = []
        self.holders = world.holders
        """The service network (read only)."""
        self.hearing = Hearing(heartbeat=p.heartbeat, timeout=self.timeout, tick=TICK)
        self.active = 0
        """Disturbances going on (a receiver behind counts as one, whatever the
        number of pairs): I1 and I6 are judged only when none is."""
        self._introduce = False
        self.last_held_by_pref: dict[Addr, float] = {}
        self.last_fit: dict[Addr, float] = {}
        """When each preferred host was last fit (up, OK, not quiesced): an address
        kept elsewhere while its preferred host is fit is no orphan (addrtable)."""
        self._held_from: dict[Addr, tuple[float, float]] = {}
        self.fit_from: dict[int, float] = {}
        """When each host last became fit (or was asked to: it may not be)."""
        self.cannot_at: dict[Addr, float] = {}
        self.last_unheld: dict[Addr, float] = {}
        self.fault_at = 0.0
        self.converged = True
        self.judged = True
        self.dirty = False
        self.pauses = PauseJudge(world, self.violate)
        self._i3 = Duplicates(world, self.violate, self.pauses.unjudged)
        self.dups = self._i3.dups
        self.i1_checks = 0
        self.early: dict[Addr, float] = {}
        self.introduced: set[Addr] = set()
        """Addresses that entered the group: their preferred host was up, OK and
        not quiesced, and put them in its table."""
        self.introducing: set[int] = set()
        self.sets = SetJudge(world, self.violate)
        self._known = Knowers(world)
        self.knowers = self._known.knowers
        self.guard = GuardJudge(world, self.violate, self._valid)
        """I7 and I8 (sim/guardcheck.py); with a guard, I1's bound is the guard's."""
        if self.guard.on:
            self.bound = self.guard.wait

    # ------------------------------------------------------- who knows what

    def host_up(self, now: float, index: int, *, resumed: bool = False) -> None:
        if resumed:
            self._known.resumed(index)
        self._known.up(now, index)
        self.pauses.host_up(index)

    def _unfit(self, now: float, index: int) -> None:
        """Host ``index`` is about to crash, leave, fail its test or be quiesced."""
        h = self.world.hosts[index]
        if h.preferred is None or not fit(h):
            return
        since = self.fit_from.get(index, 0.0)
        self._brief(h.preferred, since, self._last_good(h.preferred, since), now)
        self.last_fit[h.preferred] = now

    def host_down(self, now: float, index: int, released: list[Addr]) -> bool:
        """Host ``index`` went down; ``released`` went off the service network
        with it. True if that left nobody behind where somebody was: the engine
        then schedules a judgement."""
        self._known.down(now, index)
        self.pauses.host_down(now)
        quiet_again = self.hearing.forget(index) and self._caught_up(now)
        for address in released:
            self.unheld(now, address, index, True)
        return quiet_again

    # --------------------------------------------------------------- records

    def violate(self, invariant: str, now: float, detail: str) -> None:
        self.violations.append(Violation(invariant, round(now, 4), detail))

    def _disturbance(self, now: float) -> None:
        """A partition, loss burst or latency spike began: until the group has
        been quiet again, it may not have seen preferred hosts serving their own
        addresses, so its orphan countdowns may have started as early as now."""
        for address, holders in self.holders.items():
            owner = self.world.index_of_service.get(address)
            if owner is not None and owner in holders:
                self.early.setdefault(address, now)

    def _introduce_fit(self) -> None:
        """Note every host that is now fit to bring its address in; it does so
        once its core has put the address in its table (at its next info).

        Run at the first step after a fault: only a fault makes a host fit, so
        the hosts fit then are those fit after the last fault (the others are
        dropped again at once by ``_introduced``)."""
        self._introduce = False
        for h in self.world.hosts:
            if h.preferred is not None and fit(h):
                self.introducing.add(h.index)

    def _introduced(self) -> None:
        for index in list(self.introducing):
            h = self.world.hosts[index]
            if not fit(h) or h.preferred is None:
                self.introducing.discard(index)
            elif h.core is not None and h.core.is_service_address(h.preferred):
                self.introducing.discard(index)
                self.introduced.add(h.preferred)

    def fault(self, now: float, act: FaultAction) -> None:
        """A fault begins or ends now: the engine tells the checker just before
        the world applies it (so that it sees who is fit before a crash, leave,
        failed test or quiesce). 'start' begins the run; 'behind+' and 'behind-'
        (a receiver fell behind, the last one caught up) come from ``lost`` and
        ``delivered``. Restarts the I1 clock."""
        kind = act.kind
        if kind in _UNFIT:
            for index in act.hosts:
                self._unfit(now, index)
        elif kind in _FIT:
            for index in act.hosts:
                self.fit_from[index] = now
        base = kind.rstrip("+-")
        if base in DISTURBANCES and kind != "latency-":
            if kind.endswith("+"):
                self.active += 1
                self._disturbance(now)
            else:
                self.active -= 1
        self.pauses.fault(kind)
        self.guard.fault(now, act)
        if base not in ("behind", "start"):
            self._introduce = True
        self._restart(now)

    @property
    def quiet(self) -> bool:
        """No disturbance is going on: I1 and I6 may be judged a bound from now."""
        return not self.active

    def lost(self, now: float, s: int, r: int, dgram: Datagram) -> None:
        """dgram from s reached r in no copy: if r missed news, r is behind
        until it hears s again (sim/hearing.py), and that is a disturbance."""
        if self.hearing.lost(now, s, r, dgram, self.world.net.max_delay()):
            self.fault(now, FaultAction(now, "behind+"))

    def delivered(
        self, now: float, s: int, r: int, dgram: Datagram, sent: float, at: float | None = None
    ) -> bool:
        """r's core got dgram from s now, as arrived ``at`` (a datagram held
        on a quiet socket, sim/delivery.py: earlier). True if nobody is behind
        any more and no other disturbance is going on: the engine then
        schedules a judgement."""
        heard = now if at is None else at
        return self.hearing.delivered(heard, s, r, dgram, sent) and self._caught_up(now)

    def _caught_up(self, now: float) -> bool:
        """Nobody is behind any more: judge from now, as after a disturbance."""
        self.fault(now, FaultAction(now, "behind-"))
        return not self.active

    def _restart(self, now: float) -> None:
        self.fault_at = now
        self.converged = False
        self.judged = False
        self.dirty = True

    def link_released(self, now: float, index: int, epoch: int) -> None:
        """L1: the host's link went down an action delay ago; it still is. Not
        judged while its agent is stopped in place (``rais pause``): nothing
        runs there to release; its new process does, on its first link state."""
        h = self.world.hosts[index]
        if h.up and h.core is not None and h.epoch == epoch and not h.carrier:
            kept = sorted(fmt(a) for a, hs in self.holders.items() if index in hs)
            if kept:
                self.violate("L1", now, f"host {index} has no carrier but holds {kept}")

    def held(self, now: float, address: Addr, host: int) -> None:
        """The host has put the address online (the world has it already)."""
        self.guard.held(now, address, self.holders.get(address, set()))
        if self.pauses.hold:
            self.pauses.held(now, address, host)
        if not self.world.hosts[host].link_fit:
            self.violate("L1", now, f"host {host} acquired {fmt(address)} with its link down")
        if self.world.hosts[host].preferred == address:
            before = self._last_good(address, now)
            if self.active:
                # Taken back during a disturbance: the group may not see it, and
                # its countdown may run from when it last did.
                self.early.setdefault(address, before)
            self._held_from[address] = (now, before)
            self.last_held_by_pref[address] = now
        self.dirty = True

    def _last_good(self, address: Addr, default: float) -> float:
        """The last time the address was held by, or fit to be held by, its
        preferred host (where its orphan countdown, if any, runs from)."""
        return max(self.last_held_by_pref.get(address, default), self.last_fit.get(address, 0.0))

    def _brief(self, address: Addr, since: float, before: float, now: float) -> None:
        """A hold or a fitness of the preferred host that lasted less than a
        network delay: the hosts may never have seen it (an info overtaken by a
        newer one is dropped as stale), so the address's fate is unclear
        between the old countdown and the new one."""
        if now - since <= self.world.net.max_delay():
            self.early[address] = min(self.early.get(address, before), before)

    def unheld(self, now: float, address: Addr, host: int, held: bool) -> None:
        """The host has taken the address offline (the world has it already);
        ``held``: whether it had it."""
        if held and self.pauses.hold:
            self.pauses.unheld(now, address, host)
        if held:
            hs = self.holders[address]
            h = self.world.hosts[host]
            if h.preferred == address:
                # The kernel removes a crashed host's address later (a guard's
                # lifetime); the group counts its orphan from the crash.
                gone = now if h.up else min(now, h.down_at)
                since, before = self._held_from.pop(address, (gone, gone))
                self._brief(address, since, before, gone)
                self.last_held_by_pref[address] = gone
            if not hs:
                self.last_unheld[address] = now
        self.dirty = True

    def cannot_assign(self, now: float, address: Addr) -> None:
        self.cannot_at[address] = now

    # ---------------------------------------------------------------- checks

    def step(self, now: float) -> None:
        """Called after every simulator step that changed something."""
        if self._known.learning:
            self._known.learn(now)
        if self._introduce:
            self._introduce_fit()
        if self.introducing:
            self._introduced()
        if self.dirty:
            self.dirty = False
            self._i3.track(now)
            if not self.converged and self._settled_state(now, strict=False) is None:
                self.converged = True
                self.convergences.append(now - self.fault_at)
            elif self.converged and self.judged and self.guard.can_serve():
                problem = self._settled_state(now, strict=False)
                if problem is not None:
                    self.violate("I1", now, f"after convergence: {problem}")
                    self.judged = False
        if self.dups:
            self._i3.check(now)

    def deadline(self, now: float, fault_at: float) -> None:
        """Scheduled at fault time + bound: judge I1 and I4 if no fault came
        since and no disturbance is going on (its end schedules the check)."""
        if self.active or fault_at != self.fault_at or not self.guard.can_serve():
            return
        self.i1_checks += 1
        for address in list(self.early):
            owner = self.world.index_of_service.get(address)
            if owner is not None and owner in self.holders.get(address, ()):
                del self.early[address]
        problem = self._settled_state(now, strict=True)
        set_problem = self.sets.settled() if world_has_sets(self.world) else None
        if set_problem is not None:
            self.violate("S2", now, set_problem)
        if problem is not None:
            self.violate("I1/I4", now, problem)
        else:
            dns_problem = self._dns_answers(now)
            if dns_problem is not None:
                self.violate("I6", now, dns_problem)
            if not self.converged:
                self.converged = True
                self.convergences.append(now - self.fault_at)
            self.judged = True

    def _dns_answers(self, now: float) -> str | None:
        world = self.world
        expected = sorted_ips(
            ipaddress.ip_address(a)
            for h in world.hosts
            if h.preferred is not None
            and eligible(h)
            and h.index in self.holders.get(h.preferred, ())
            for a in (h.preferred, *self.sets.whole(h.index))
        )
        for h in world.hosts:
            if h.up and h.core is not None:
                got = advertise(views(h.core.view(now)), _DNS_POLICY).addresses
                if got != expected:
                    shown = ", ".join(map(str, got))
                    want = ", ".join(map(str, expected))
                    return f"host {h.index}'s DNS thread advertises [{shown}], expected [{want}]"
        return None

    def _valid(self, now: float, address: Addr, owner: int) -> bool | None:
        h = self.world.hosts[owner]
        if fit(h) or (h.up and owner in self.holders.get(address, ())):
            return True
        if address not in self.introduced:
            return False  # its preferred host has never been fit to bring it in
        owner_knows = h.up and h.core is not None and h.core.is_service_address(address)
        if not owner_knows and address in self.knowers:
            known = self.knowers[address]
            if known is None:
                return None  # ambiguous: a host that may or may not have learnt it
            if not known:
                return False  # every host that knew the address is gone
        last = max(
            self.last_held_by_pref.get(address, h.started_at), self.last_fit.get(address, 0.0)
        )
        first = min(last, self.early.get(address, last))
        orphan = self.world.params.orphan_timeout
        slack = self.timeout + 2 * self.hb + 0.05
        if first + orphan - now > slack:
            return True
        if last + orphan - now < -slack:
            return False
        return None

    def _pins(self) -> dict[Addr, int]:
        """Addresses under an operator's move that the leader must honour: the
        winning request over the live hosts' entries is a MOVE to an eligible host."""
        world = self.world
        up = [h for h in world.hosts if h.up and h.core is not None]
        entries = [h.core.entry() for h in up if h.core is not None]
        if not any(e.requests for e in entries):
            return {}
        out = {}
        for address, req in winning(entries).items():
            if req.op != ReqOp.MOVE or req.target is None:
                continue
            t = world.hosts[world.index_of[req.target]]
            if eligible(t):
                out[address] = t.index
        return out

    def _settled_state(self, now: float, *, strict: bool) -> str | None:
        """None if I1 (and, when strict, I4) hold now; else what is wrong."""
        world = self.world
        anyone_eligible = any(eligible(h) for h in world.hosts)
        pins = self._pins()
        for h in world.hosts:
            address = h.preferred
            if address is None:
                continue
            valid = self._valid(now, address, h.index)
            holders = self.holders.get(address, set())
            if valid is None:
                continue
            if not valid:
                if strict and holders:
                    return f"expired orphan {fmt(address)} still held by {sorted(holders)}"
                continue
            live_ok = [i for i in holders if world.hosts[i].up and world.hosts[i].ok]
            if not anyone_eligible and not live_ok:
                if strict and any(x.up for x in world.hosts):
                    since = self.last_unheld.get(address, 0.0)
                    said = self.cannot_at.get(address, -1.0)
                    # After a partition the leader may never have seen the other
                    # side place it: its earlier event still stands.
                    if said < since and not (0.0 <= said < world.net.last_change):
                        return f"{fmt(address)} unassignable but no cannot-assign event"
                continue
            if len(live_ok) != 1 or len(holders) != 1:
                return f"{fmt(address)} held by {sorted(holders)} (live and OK: {sorted(live_ok)})"
            target = pins.get(address)
            if target is not None:
                if strict and holders != {target}:
                    where = sorted(holders)
                    return f"{fmt(address)} not on host {target}, where it was moved: {where}"
                continue
            if strict and fit(h) and holders != {h.index}:
                return f"{fmt(address)} not back on its preferred host {h.index}: {sorted(holders)}"
        return None
