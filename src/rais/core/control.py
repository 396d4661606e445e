"""The leader's control pass (figure 6A, steps 606-610, and its pseudocode).

Built from the live hosts' entries (the leader's own included) and the
service-address table:

* the control service-address table (figure 6B): for each address, its
  claimants and their states;
* the spare list (eligible hosts without a preferred address) and the
  non-spare eligible list. Eligible = live, OK, not quiesced, not an
  observer, not leaving.

The rules, numbered as in docs/protocol.md, each one function of ``Controller``:

1. ``_release_invalid``: a claimant of an address that is not in the table
   (invalid: unknown or expired) is told to release it.

Then per address of the table, in table order, unless a command for it is
pending (``_decide``, step 610):

2. an address with a claimant still acquiring or releasing is left alone;
3. ``_assign_unserved``: an unserved address goes to its preferred host if
   that host is eligible, else to a spare, else to a non-spare eligible host
   (the least loaded, see rais.core.placement; the patent's random pick with placement
   "random"), else a "cannot assign" event is raised (once, until the
   situation changes);
   ``_move`` (beyond the patent): an address an operator moved goes to the
   target host and stays there, release before acquire (core/requests.py);
4. ``_fail_back``: an address served, but not by its eligible preferred host,
   is given back (failback, once the preferred host has been eligible for
   failback_delay; never automatically with failback "manual"), release
   before acquire: every holder is told to release and the preferred host is
   told to acquire only once the address is unserved;
5. ``_resolve_duplicates``: an address with several claimants keeps the
   preferred host (if it claims and is not quiesced), else a random claiming
   spare, else a random claimant; the others are told to release.

A host that announced a pause (``rais pause``, core/hosts.py ``pausing``) is in
no list and is given nothing, and an address it claims is left alone by every
rule (no release, move or failback): it keeps them while its agent restarts in
place. Another claimant of such an address (a duplicate from a partition that
healed during the pause) is told to release it: the pausing host cannot.

Commands stay *pending* until the target's own info shows them obeyed, the
target is gone, or ``command_timeout`` passes; an address with a pending
command is not decided again, so a random pick is never second-guessed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from rais.core.addr import Addr
from rais.core.addrtable import AddressTable, AddrRow
from rais.core.backoff import Backoff
from rais.core.effects import EventKind
from rais.core.hosts import eligible, pausing
from rais.core.messages import AddrState, Command, HostEntry, Op, ReqOp, Request
from rais.core.outbox import Outbox
from rais.core.placement import loads, pick

_BUSY = (AddrState.ACQUIRING, AddrState.RELEASING)


@dataclass(slots=True)
class _Pending:
    commands: list[Command]
    deadline: float


@dataclass(slots=True)
class _Pass:
    """One control pass: the control database of step 608 (``spares``, the spare
    list; ``others``, the non-spare eligible list; ``claims``, the control
    service-address table of figure 6B: each address's claimants and their
    states; ``load``, see ``Controller._loads``) and the commands given so far."""

    now: float
    command_timeout: float
    by_id: dict[Addr, HostEntry]
    spares: list[Addr]
    others: list[Addr]
    claims: dict[Addr, list[tuple[Addr, AddrState]]]
    load: dict[Addr, list[int]]
    requests: dict[Addr, Request]
    held: set[Addr]
    """Addresses a pausing host claims: no rule touches them."""
    free_at: Callable[[Addr], float]
    """When an unserved address may be given to a host (rais.core.guard, rule 3)."""
    hand_over_at: float
    """Before then no move or failback begins (a guard's new quorate interval:
    the address would wait, unserved, for rule 3)."""
    new: list[Command] = field(default_factory=list)


def _obeyed(cmd: Command, entry: HostEntry) -> bool:
    for address, state in entry.served:
        if address == cmd.address:
            return cmd.op == Op.ACQUIRE or state == AddrState.RELEASING
    return cmd.op == Op.RELEASE


def _takes(h: HostEntry) -> bool:
    """May be given an address: eligible and not pausing."""
    return eligible(h) and not pausing(h)


class Controller:
    """The leader-side state: pending commands and unassignable addresses."""

    __slots__ = (
        "_backoffs",
        "_cannot",
        "_fit_since",
        "_leading_since",
        "_pending",
        "_wake",
        "backoff",
        "failback",
        "failback_delay",
        "load_scale",
        "out",
        "placement",
        "rng",
    )

    def __init__(
        self,
        out: Outbox,
        rng: random.Random,
        backoff: float,
        *,
        placement: str = "least-loaded",
        failback: str = "immediate",
        failback_delay: float = 0.0,
        load_scale: int = 1000,
    ) -> None:
        self.out = out
        self.rng = rng
        self.backoff = backoff
        self.placement = placement
        self.failback = failback
        self.failback_delay = failback_delay
        self.load_scale = load_scale
        # Since when each host has been eligible without a break (as this leader
        # saw it), for failback_delay; _wake is when a delayed failback is due.
        self._fit_since: dict[Addr, float] = {}
        self._wake: float | None = None
        self._leading_since: float | None = None
        """The first pass since this host became leader."""
        self._pending: dict[Addr, _Pending] = {}
        self._cannot: set[Addr] = set()
        self._backoffs = Backoff(backoff)

    def acquire_failed(self, now: float, host: Addr, address: Addr) -> None:
        """``host`` reported (by dropping it from acquiring) that it could not take
        ``address``: back off that pair (rais.core.backoff)."""
        self._backoffs.failed(now, host, address)

    def note_outcomes(self, now: float, prev: HostEntry, entry: HostEntry) -> None:
        """A host's new info shows which of its acquires succeeded (online) or
        failed (gone straight from acquiring)."""
        now_served = dict(entry.served)
        for address, state in prev.served:
            if state != AddrState.ACQUIRING:
                continue
            after = now_served.get(address)
            if after is None:
                self.acquire_failed(now, entry.id, address)
            elif after == AddrState.ONLINE:
                self.acquired(entry.id, address)

    def acquired(self, host: Addr, address: Addr) -> None:
        self._backoffs.succeeded(host, address)

    def _may_take(self, now: float, host: Addr, address: Addr) -> bool:
        return self._backoffs.may_take(now, host, address)

    def reset(self) -> None:
        """Leadership lost: forget what was in flight."""
        self._leading_since = None
        self._pending.clear()
        self._cannot.clear()
        self._fit_since.clear()
        self._wake = None

    def membership_changed(self) -> None:
        """A host joined or was lost: say again what still cannot be assigned
        (what the group could do may have changed meanwhile, unseen)."""
        self._cannot.clear()

    def pending(self) -> tuple[Command, ...]:
        return tuple(c for p in self._pending.values() for c in p.commands)

    def has_pending(self) -> bool:
        return bool(self._pending)

    def next_deadline(self) -> float | None:
        times = [p.deadline for p in self._pending.values()]
        times.extend(self._backoffs.blocked.values())
        if self._wake is not None:
            times.append(self._wake)
        return min(times) if times else None

    def observe(self, entry: HostEntry) -> bool:
        """A host's new info: clear the commands it shows obeyed. True if any cleared."""
        cleared = False
        for address in list(self._pending):
            p = self._pending[address]
            keep = [c for c in p.commands if c.target != entry.id or not _obeyed(c, entry)]
            if len(keep) != len(p.commands):
                cleared = True
                if keep:
                    p.commands = keep
                else:
                    del self._pending[address]
        return cleared

    def host_gone(self, host: Addr) -> None:
        for address in list(self._pending):
            p = self._pending[address]
            p.commands = [c for c in p.commands if c.target != host]
            if not p.commands:
                del self._pending[address]

    def expire(self, now: float) -> bool:
        late = [a for a, p in self._pending.items() if p.deadline <= now]
        for address in late:
            del self._pending[address]
        ready = self._backoffs.expire(now)
        due = self._wake is not None and self._wake <= now
        if due:
            self._wake = None
        return bool(late or ready or due)

    def run(
        self,
        now: float,
        hosts: list[HostEntry],
        table: AddressTable,
        command_timeout: float,
        requests: dict[Addr, Request] | None = None,
        free_at: Callable[[Addr], float] = lambda address: -math.inf,
        hand_over_at: float = -math.inf,
    ) -> list[Command]:
        """One control pass (figure 6A, steps 608 and 610): the rules of the module
        doc, in its order; returns the new commands (also recorded as pending).
        ``requests``: the operator request in force per address (core/requests.py)."""
        p = self._build(now, hosts, command_timeout, requests or {}, free_at, hand_over_at)
        if self._leading_since is None:
            self._leading_since = now
        rows = table.rows
        self._release_invalid(p, rows, table.expired)
        for address, row in rows.items():
            if address not in self._pending:
                self._decide(p, address, row)
        return p.new

    def _build(
        self,
        now: float,
        hosts: list[HostEntry],
        command_timeout: float,
        requests: dict[Addr, Request],
        free_at: Callable[[Addr], float],
        hand_over_at: float,
    ) -> _Pass:
        """Step 608: the control database (the pseudocode's outer loop over the
        hosts, its inner loop over the addresses each serves)."""
        by_id = {h.id: h for h in hosts}
        spares: list[Addr] = []
        others: list[Addr] = []
        claims: dict[Addr, list[tuple[Addr, AddrState]]] = {}
        held: set[Addr] = set()
        for h in hosts:
            if _takes(h):
                (spares if h.preferred is None else others).append(h.id)
            for address, state in h.served:
                claims.setdefault(address, []).append((h.id, state))
            if pausing(h):
                held.update(a for a, _ in h.served)
        p = _Pass(
            now,
            command_timeout,
            by_id,
            spares,
            others,
            claims,
            loads(hosts, self.load_scale),
            requests,
            held,
            free_at,
            hand_over_at,
        )
        self._track_eligible(now, hosts, by_id)
        return p

    def _track_eligible(
        self, now: float, hosts: list[HostEntry], by_id: dict[Addr, HostEntry]
    ) -> None:
        """Since when each host has been eligible without a break, for failback_delay
        (rule 4); the delayed failbacks of this pass set ``_wake`` afresh."""
        fit_since = self._fit_since
        for h in hosts:
            if _takes(h):
                fit_since.setdefault(h.id, now)
            else:
                fit_since.pop(h.id, None)
        for gone in [h for h in fit_since if h not in by_id]:
            del fit_since[gone]
        self._wake = None

    def _command(
        self,
        p: _Pass,
        op: Op,
        target: Addr,
        address: Addr,
        prefixlen: int,
        extras: tuple[tuple[Addr, int], ...] = (),
    ) -> None:
        """Give a command in this pass; it stays pending until obeyed. An acquire
        carries the other addresses of the set ``address`` is the key of."""
        cmd = Command(op, target, address, prefixlen, extras)
        p.new.append(cmd)
        if op == Op.ACQUIRE and target in p.load:
            p.load[target][0] += 1
        pending = self._pending.get(address)
        if pending is None:
            self._pending[address] = _Pending([cmd], p.now + p.command_timeout)
        else:
            pending.commands.append(cmd)

    def _release_invalid(
        self, p: _Pass, rows: dict[Addr, AddrRow], expired: Mapping[Addr, Addr]
    ) -> None:
        """Rule 1, the invalid (step 608, the inner loop's "if service_address not
        expired ... else send release message"): a claimant of an address that is
        not in the table (unknown or expired) is told to release it. An unknown
        one only once this host has led for ``backoff`` (one timeout): a leader
        new to the job may not have its table yet (a host that took its
        addresses over after an in-place restart learns the rows of the orphans
        it holds from the others' infos once they see its table lacks them)."""
        assert self._leading_since is not None
        settled = self._leading_since + self.backoff
        for address, claimants in p.claims.items():
            if address in rows or address in self._pending or address in p.held:
                continue
            if address not in expired and p.now < settled:
                self._wake = settled if self._wake is None else min(self._wake, settled)
                continue
            for host, state in claimants:
                if state != AddrState.RELEASING:
                    self._command(p, Op.RELEASE, host, address, 0)

    def _decide(self, p: _Pass, address: Addr, row: AddrRow) -> None:
        """Step 610 for one address of the table with no command pending: unserved
        (rule 3); busy, left alone (rule 2: "if state including acquiring or
        releasing, continue"); moved; failed back (rule 4); duplicated (rule 5)."""
        claimants = p.claims.get(address, [])
        if not claimants:
            due = p.free_at(address)
            if due > p.now:  # a guard waits for every lease on it to run out
                self._wake = due if self._wake is None else min(self._wake, due)
                return
            self._assign_unserved(p, address, row)
            return
        self._cannot.discard(address)
        if any(state in _BUSY for _, state in claimants):
            return
        if address in p.held:
            # A pausing host claims it and cannot let it go: any other claimant
            # (a duplicate from before the pause, a partition healed since) does.
            for host, _ in claimants:
                if not pausing(p.by_id[host]):
                    self._command(p, Op.RELEASE, host, address, row.prefixlen)
            return
        holders = [host for host, _ in claimants]
        if p.now < p.hand_over_at:
            self._wake = p.hand_over_at if self._wake is None else min(self._wake, p.hand_over_at)
        elif self._move(p, address, row, holders) or self._fail_back(p, address, row, holders):
            return
        self._resolve_duplicates(p, address, row, holders)

    def _assign_unserved(self, p: _Pass, address: Addr, row: AddrRow) -> None:
        """Rule 3, the unserved (step 610, "managing unserved states"): to the host
        a move pins it to, else to its preferred host if that can take it, else a
        spare, else a non-spare eligible host (rais.core.placement), else a "cannot assign"
        event, raised once until the situation changes."""
        choice = self._pin(p, address) or (
            row.preferred if self._preferred_can_take(p, address, row) else None
        )
        if choice is None:
            for pool in (p.spares, p.others):
                takers = [h for h in pool if self._may_take(p.now, h, address)]
                if takers:
                    choice = pick(takers, p.load, self.placement, self.rng)
                    break
        if choice is None:
            if address not in self._cannot:
                self._cannot.add(address)
                self.out.event(p.now, EventKind.CANNOT_ASSIGN, address, "no eligible host")
            return
        self._cannot.discard(address)
        self._command(p, Op.ACQUIRE, choice, address, row.prefixlen, row.extras)

    def _move(self, p: _Pass, address: Addr, row: AddrRow, holders: list[Addr]) -> bool:
        """An operator's move (beyond the patent, core/requests.py), release before
        acquire like a failback: every holder but the target is told to release;
        rule 3 gives it to the target once it is unserved, and it stays there. True
        if the address is pinned (no other rule applies)."""
        pin = self._pin(p, address)
        if pin is None:
            return False
        for host in holders:
            if host != pin:
                self._command(p, Op.RELEASE, host, address, row.prefixlen)
        return True

    def _fail_back(self, p: _Pass, address: Addr, row: AddrRow, holders: list[Addr]) -> bool:
        """Rule 4, failback (step 610, "add preferred id_address to entry": the
        preferred host injected as a claimant): if the preferred host can take the
        address but does not claim it and failback is due (or an operator asked
        for it), every holder is told to release; rule 3 gives it to the preferred
        host once it is unserved, so the injected claimant is never told to
        release. True if it fails back."""
        req = p.requests.get(address)
        forced = req is not None and req.op == ReqOp.FAILBACK
        if not (
            self._preferred_can_take(p, address, row)
            and row.preferred not in holders
            and (forced or self._failback_due(p.now, row.preferred))
        ):
            return False
        for host in holders:
            self._command(p, Op.RELEASE, host, address, row.prefixlen)
        return True

    def _resolve_duplicates(
        self, p: _Pass, address: Addr, row: AddrRow, holders: list[Addr]
    ) -> None:
        """Rule 5, duplicates (step 610, the pseudocode's duplicate check): of
        several claimants keep the preferred host if it claims the address and is
        not quiesced, else a random claiming spare, else a random claimant; the
        others are told to release."""
        if len(holders) < 2:
            return
        pref = p.by_id.get(row.preferred)
        if row.preferred in holders and pref is not None and not pref.quiesced:
            keep = row.preferred
        else:
            spares = [h for h in holders if p.by_id[h].preferred is None]
            keep = self.rng.choice(spares if spares else holders)
        for host in holders:
            if host != keep:
                self._command(p, Op.RELEASE, host, address, row.prefixlen)

    def _preferred_can_take(self, p: _Pass, address: Addr, row: AddrRow) -> bool:
        """The address's preferred host is live, prefers it, is eligible and is not
        backing off an acquire of it."""
        pref = p.by_id.get(row.preferred)
        return (
            pref is not None
            and pref.preferred == address
            and _takes(pref)
            and self._may_take(p.now, row.preferred, address)
        )

    def _pin(self, p: _Pass, address: Addr) -> Addr | None:
        """The host a move request pins ``address`` to, if it can take it now."""
        req = p.requests.get(address)
        if req is None or req.op != ReqOp.MOVE or req.target is None:
            return None
        target = p.by_id.get(req.target)
        if target is None or not _takes(target) or not self._may_take(p.now, target.id, address):
            return None
        return target.id

    def _failback_due(self, now: float, preferred: Addr) -> bool:
        """Whether a returned preferred host gets its address back now (failback
        "immediate", after failback_delay of being eligible; never automatically
        with "manual")."""
        if self.failback == "manual":
            return False
        since = self._fit_since.get(preferred, now)
        due = since + self.failback_delay
        if due <= now:
            return True
        self._wake = due if self._wake is None else min(self._wake, due)
        return False
