"""One core's state: its parts (membership, address table, served addresses,
requests, controller, inbox, outbox, sender), built once, and the read side:
this host's entry (figure 2C), the read model (rais.core.view) and the
driver's questions. The transitions are rais.core.core's."""

from __future__ import annotations

import random

from rais.core import features, wire
from rais.core.addr import Addr, fmt, id_key
from rais.core.addrtable import AddressTable
from rais.core.config import CoreConfig
from rais.core.control import Controller
from rais.core.emit import PeerPages, Sender
from rais.core.guard import Guard
from rais.core.hosts import eligible
from rais.core.inbox import Inbox
from rais.core.link import Link
from rais.core.membership import Membership
from rais.core.messages import AddrState, Command, HostEntry, Request
from rais.core.outbox import Outbox
from rais.core.pause import OwnPause, lacking, out_of_bounds, refusal_text
from rais.core.requests import Requests
from rais.core.served import Served
from rais.core.versions import Versions, send_version
from rais.core.view import CoreView, MemberView


class CoreParts:
    """A core's state and parts, and everything read from them (the read
    model and the driver's questions); ``Core`` adds the inputs and their
    transitions."""

    def __init__(
        self,
        config: CoreConfig,
        *,
        epoch: int,
        rng: random.Random,
        now: float,
        beat_origin: float | None = None,
    ) -> None:
        """``beat_origin``: heartbeats after the first (sent at ``now``) fall on
        ``beat_origin`` + k ``heartbeat`` (an agent gives all its groups the
        same, so that one wake-up sends them all); None: every ``heartbeat``
        from ``now``."""
        self.config = config
        self.id: Addr = config.host_id
        self.epoch = epoch & 0xFFFFFFFF
        self.group_tag = wire.group_tag(config.group)
        self.out = Outbox(config.group, self.id)
        self.sender = Sender(config, self.epoch, self.out)
        self.inbox = Inbox(self.id)
        self.versions = Versions()
        self.members = Membership(self.id, config.timeout)
        self.table = AddressTable(config.orphan_timeout)
        self.served = Served(self.out, retry=config.timeout)
        self.requests = Requests(self.id)
        self.control = Controller(
            self.out,
            rng,
            backoff=config.timeout,
            placement=config.placement,
            failback=config.failback,
            failback_delay=config.failback_delay,
            load_scale=config.load_scale,
        )
        self.ok = config.start_ok
        """The combined result of the group's tests (``test_result``)."""
        self.link = Link(config.link_hold, now, self.out)
        """The service link (``link_state``); the entry's OK needs it fit."""
        self.guard = Guard(config, self.out, now)
        """Votes, quorum, leases (rais.core.guard); idle with guard "none"."""
        self.quiesced = False
        self.leaving = False
        self.left = False
        self.settled = False
        """Has heard the group for one full ``timeout`` since it started
        listening: only then may it lead, and only then does its DNS thread
        answer or publish (rais.dns.group)."""
        self.load = 0
        self.capacity = 0
        self.started = now
        self.now = now
        """The ``now`` of the latest input (the own entry's pause countdown reads it)."""
        self.own_pause = OwnPause()
        self.settle_at = now + config.timeout
        self.next_heartbeat = now
        self.beat_origin = beat_origin
        self.next_announce: float | None = None
        self._pages = PeerPages(config.peers_per_message)
        self._send_info = True
        self._need_pass = False
        self._leader: Addr | None = None
        self._leader_rows: frozenset[Addr] = frozenset()
        self._timer: float | None = None
        self._timer_stale = True

    # ----------------------------------------------------------------- state

    @property
    def leader(self) -> Addr | None:
        """The leader as this host sees it (None while nobody can lead)."""
        return self._leader

    @property
    def is_leader(self) -> bool:
        return self._leader == self.id

    def entry(self) -> HostEntry:
        """This host's own host information entry (figure 2C)."""
        c = self.config
        return HostEntry(
            id=self.id,
            control=c.control,
            ok=self.ok and self.link.fit,
            quiesced=self.quiesced or self.leaving,
            observer=c.observer,
            leaving=self.left,
            settled=self.settled,
            load=self.load,
            capacity=self.capacity,
            preferred=c.preferred,
            prefixlen=c.prefixlen,
            served=self.served.snapshot(),
            requests=self.requests.snapshot(),
            extras=c.extras,
            pause_ms=self.own_pause.remaining_ms(self.now),
            versions=c.wire_versions,
            features=c.features,
        )

    def common_features(self) -> frozenset[str]:
        """The features every live member of the group, this host included,
        announces (rais.core.features): a feature is used only while it is common."""
        return features.common(self.entry(), self.members.live())

    def pause_refusal(self, duration: float) -> str | None:
        """Why this host cannot pause for ``duration`` seconds (None: it can):
        it is leaving, the duration is out of bounds, or a live member lacks the
        feature."""
        if self.left or self.leaving:
            return "this host is leaving the group"
        if self.guard.on:
            return (
                f"group {self.config.group} has guard {self.config.guard!r}: a silent "
                "host cannot keep its lease through a pause"
            )
        why = out_of_bounds(duration, self.config.timeout)
        if why is not None:
            return why
        lacking = self.pause_lacking()
        if lacking:
            return refusal_text(self.config.group, lacking)
        return None

    def pause_lacking(self) -> list[Addr]:
        """The hosts of the group, this one included, that do not announce the
        ``pause`` feature: while there is any, ``rais pause`` is refused."""
        return [e.id for e in lacking(self.entry(), self.members.live())]

    def refusal(self, req: Request) -> str | None:
        """Why an operator request (``rais move`` / ``rais failback``) cannot be
        taken here (None: it can)."""
        if self.left or self.leaving:
            return "this host is leaving the group"
        if req.address not in self.table.rows:
            return f"{fmt(req.address)} is not a service address of group {self.config.group}"
        if req.target is not None and req.target != self.id:
            rec = self.members.records.get(req.target)
            if rec is None or not rec.live:
                return f"host {fmt(req.target)} is not a live member of group {self.config.group}"
        return None

    def _sets_gate(self) -> tuple[bool, str]:
        """Whether a held address set may be brought whole (``sets`` is common),
        and if not, why (rais.core.served)."""
        if features.SETS in self.common_features():
            return True, ""
        if features.SETS not in self.config.features:
            return False, "this host does not announce sets"
        lacking = sorted(
            (e.id for e in self.members.live() if features.SETS not in e.features), key=id_key
        )
        shown = ", ".join(fmt(h) for h in lacking[:3])
        more = f" and {len(lacking) - 3} more" if len(lacking) > 3 else ""
        return False, f"not every live member announces sets: {shown}{more}"

    def _set_extras(self, key: Addr) -> tuple[tuple[Addr, int], ...]:
        """The other addresses of the set keyed by ``key``, as this host knows it:
        its own preferred set from its config, else the table's row."""
        if key == self.config.preferred:
            return self.config.extras
        row = self.table.rows.get(key)
        return row.extras if row is not None else ()

    def _on_key(self, req: Request) -> Request:
        """Any address of a set names the set: requests are on keys."""
        key = self.table.key_of(req.address)
        if key is None or key == req.address:
            return req
        return Request(req.op, key, req.target, req.stamp)

    def _acquire_set(self, cmd: Command) -> bool:
        """Obey an acquire (the caller checked this host may): the set keyed by
        ``cmd.address``, whole only while ``sets`` is common (rais.core.served)."""
        full = self._set_extras(cmd.address) or cmd.extras
        whole, why = self._sets_gate() if full else (True, "")
        return self.served.acquire(cmd.address, cmd.prefixlen, full, whole=whole, why=why)

    def _reconcile_sets(self, now: float) -> None:
        """After every input: bring each held set to what it may be now."""
        served = self.served
        if served.sets and (
            # A set it holds, or one whose other addresses it learnt since it took the key.
            served.has_sets() or any(self._set_extras(k) for k in served.states)
        ):
            whole, why = self._sets_gate()
            served.reconcile(now, whole, why, self._known_extras, grow=eligible(self.entry()))

    def _known_extras(self, key: Addr) -> tuple[tuple[Addr, int], ...] | None:
        """As ``_set_extras``, None when this host knows none (keep what it has)."""
        return self._set_extras(key) or None

    def drops(self) -> dict[str, int]:
        """Datagrams dropped, by reason."""
        return dict(self.inbox.drops)

    def hosts_key(self) -> tuple[object, ...]:
        """A value that changes whenever what ``view`` shows of the hosts does
        (their entries, liveness, the leader, settling, this host's sets): a
        reader that only needs those (the DNS) rebuilds from ``view`` only then.
        Cheap: the entries compare by identity first, and an entry heard again
        unchanged is the same object (rais.core.inbox.Memo)."""
        records = tuple((r.entry, r.live) for r in self.members.records.values())
        return (self._leader, self.settled, self.entry(), records, self.served.views())

    def view(self, now: float) -> CoreView:
        """The read model (rais.core.view): one frozen snapshot of this core."""
        own = self.entry()
        return CoreView(
            group=self.config.group,
            host=self.id,
            now=now,
            leader=self._leader,
            settled=self.settled,
            ok=own.ok,
            quiesced=self.quiesced,
            left=self.left,
            entry=own,
            members=(
                MemberView(
                    own,
                    True,
                    0.0,
                    this_host=True,
                    paused_s=None if self.own_pause.until is None else self.own_pause.until - now,
                ),
                *self.members.views(now),
            ),
            rows=self.table.views(now),
            expired=tuple(self.table.expired),
            drops=self.drops(),
            wire_version=send_version(own, live := self.members.live()),
            common_features=tuple(sorted(features.common(own, live))),
            tests_ok=self.ok,
            link=self.link.view(now),
            sets=self.served.views(),
            guard=self.guard.view(now, self.served.states),
        )

    def lease_left(self, address: Addr, now: float) -> float | None:
        """With a guard: how long this host may still hold the set keyed by (or
        having) ``address`` (rais.core.guard): the driver never sets a kernel
        lifetime past it, and adds or refreshes nothing with under
        ``MIN_KERNEL`` left. None without a guard (the normal lifetime)."""
        return self.guard.lease_left(self.key_of(address), now)

    def holding(self, address: Addr) -> AddrState | None:
        """The state in which this host serves ``address`` (None: it does not):
        a key, or another address of a set it serves (rais.core.served.holding)."""
        return self.served.holding(address)

    def key_of(self, address: Addr) -> Addr:
        """The key of the address set that has ``address`` (a set this host serves,
        else a row of the table); ``address`` itself if none has it."""
        return self.served.key_of(address) or self.table.key_of(address) or address

    def is_service_address(self, address: Addr) -> bool:
        """Whether ``address`` is a (valid) service address of the group, as
        this host knows it."""
        return self.table.key_of(address) is not None

    def has_work(self) -> bool:
        """Effects are waiting to be drained, or the timer must be asked again."""
        return bool(self.out.items) or self._timer_stale

    # ---------------------------------------------------------------- inputs
