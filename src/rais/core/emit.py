"""What goes into an outgoing info besides the host's own entry: the page of
peers it reports on, and the orphan rows of the service-address table; and
the sender that signs, frames and queues every message (figure 2B, the info
message; the wire format is rais.core.wire)."""

from __future__ import annotations

from collections.abc import Mapping

from rais.core import wire
from rais.core.addr import Addr
from rais.core.addrtable import AddressTable
from rais.core.config import CoreConfig
from rais.core.effects import Send
from rais.core.hosts import fit
from rais.core.membership import HostRecord, Membership
from rais.core.messages import Command, GuardInfo, Hello, HostEntry, Message, PeerAge, TableEntry
from rais.core.outbox import Outbox


def orphan_rows(
    rows: tuple[TableEntry, ...],
    *,
    leading: bool,
    me: HostEntry,
    leader_rows: frozenset[Addr],
    records: Mapping[Addr, HostRecord],
) -> tuple[TableEntry, ...]:
    """The leader sends its orphan rows. Another host sends only the orphan
    rows its leader's last table lacked, of hosts that cannot bring them in
    themselves (silent, failing or quiesced): a leader that missed a death or
    restarted learns of the orphan that way, and messages stay small when
    they agree."""
    if leading:
        return rows
    own_fit = fit(me)
    out = []
    for te in rows:
        if te.preferred == me.id:
            if not own_fit:
                out.append(te)  # whoever hears this host learns its row
            continue
        if te.address in leader_rows:
            continue
        rec = records.get(te.preferred)
        if rec is not None and rec.live and fit(rec.entry):
            continue  # its preferred host brings it in with its own entry
        out.append(te)
    return tuple(out)


def info(
    now: float,
    entry: HostEntry,
    *,
    pages: PeerPages,
    members: Membership,
    table: AddressTable,
    leader_rows: frozenset[Addr],
    commands: tuple[Command, ...] | None,
    epochs: Mapping[Addr, int],
    guard: GuardInfo | None = None,
) -> Message:
    """This host's next info: its entry, a page of peers, the orphan rows it
    sends (all of them, with ``commands``, when it leads), the paused hosts it
    knows of."""
    return Message(
        entry=entry,
        peers=pages.next(now, members.records),
        table=orphan_rows(
            table.to_wire(now),
            leading=commands is not None,
            me=entry,
            leader_rows=leader_rows,
            records=members.records,
        ),
        commands=commands or (),
        paused=members.paused_peers(now, epochs),
        guard=guard,
    )


class PeerPages:
    """Round-robin pages of at most ``size`` peers, one page per info."""

    __slots__ = ("ids", "offset", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.ids: list[Addr] = []
        """Every host ever heard, in the order first heard."""
        self.offset = 0

    def next(self, now: float, records: Mapping[Addr, HostRecord]) -> tuple[PeerAge, ...]:
        ids = self.ids
        if not ids:
            return ()
        n = min(len(ids), self.size)
        start = self.offset % len(ids)
        self.offset = start + n
        chosen = ids[start : start + n]
        if len(chosen) < n:
            chosen += ids[: n - len(chosen)]
        return tuple(
            PeerAge(h, min(65535, int((now - r.last_heard) * 1000)), r.live)
            for h in chosen
            if (r := records[h])
        )


class Sender:
    """Encodes this host's messages under its epoch and next sequence numbers
    (one per datagram) and queues them as ``Send`` effects on every control
    address."""

    __slots__ = ("_key", "_parts", "config", "epoch", "group_tag", "out", "seq", "vias")

    def __init__(self, config: CoreConfig, epoch: int, out: Outbox) -> None:
        self._key: tuple[object, ...] | None = None
        self._parts: tuple[bytes, bytes] | None = None
        """The last version-2 info's body around its PEERS, and what it encodes:
        a heartbeat that says what the last one said is not encoded again."""
        self.config = config
        self.epoch = epoch
        self.group_tag = wire.group_tag(config.group)
        self.out = out
        self.seq = 0
        self.vias = tuple(range(len(config.control)))

    def send(self, msg: Message, version: int = 1) -> None:
        c = self.config
        parts = None
        if version == 2:
            key = (msg.entry, msg.table, msg.commands, msg.paused, msg.guard, msg.unknown)
            if key == self._key:
                parts = self._parts
            else:
                parts = self._parts = wire.body_parts(msg)
                self._key = key
        datagrams, _ = wire.encode(
            msg,
            group_tag=self.group_tag,
            sender=c.host_id,
            epoch=self.epoch,
            seq=self.seq,
            key=c.keys[0],
            max_size=c.max_datagram,
            version=version,
            parts=parts,
        )
        self.seq = (self.seq + len(datagrams)) & 0xFFFFFFFF
        for data in datagrams:
            self.out.items.append(Send(data, self.vias))

    def hello(self, hello: Hello) -> None:
        """One version-2 datagram with this host's versions and features (and the
        paused hosts it knows of, if they fit in one datagram)."""
        c = self.config
        try:
            data = wire.encode_hello_datagram(
                hello,
                group_tag=self.group_tag,
                sender=c.host_id,
                epoch=self.epoch,
                seq=self.seq,
                key=c.keys[0],
            )
        except ValueError:
            if not hello.paused:
                raise
            self.hello(Hello(hello.versions, hello.features, hello.unknown))
            return
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        self.out.items.append(Send(data, self.vias))
