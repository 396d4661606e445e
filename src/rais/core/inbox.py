"""Accepting datagrams: replay protection, duplicate suppression, reassembly.

Each sender has a boot epoch and an ascending sequence number per datagram.
The receiver keeps, per sender, the highest epoch seen and a 64-entry sliding
window over sequence numbers (as IPsec does): a sequence number already seen
in the window is a duplicate (the same datagram over another control network,
patent step 404), one below the window or from an older epoch is a replay, a
newer epoch resets the window. Messages split over several datagrams are
reassembled here; a new message from the same sender discards an incomplete
older one. A whole message older than the last one taken from its sender (it
came late, say over a slower control network) is dropped as "stale": its
entry would turn the sender's state back; everything it carried is repeated in
the newer one.
"""

from __future__ import annotations

from collections import Counter

from rais.core.addr import Addr
from rais.core.body import DecodeError, decode_body
from rais.core.config import CoreConfig
from rais.core.messages import Datagram, Hello, Message
from rais.core.sections import decode_sections, peers_span
from rais.core.wire import decode as decode_datagram

WINDOW = 64


class _Window:
    __slots__ = ("epoch", "mask", "top")

    def __init__(self, epoch: int, seq: int) -> None:
        self.epoch = epoch
        self.top = seq
        self.mask = 1

    def accept(self, epoch: int, seq: int) -> str | None:
        """Mark (epoch, seq) seen; return None if new, else the drop reason."""
        if epoch != self.epoch:
            if epoch < self.epoch:
                return "replay"
            self.epoch, self.top, self.mask = epoch, seq, 1
            return None
        if seq > self.top:
            shift = seq - self.top
            self.mask = ((self.mask << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            self.top = seq
            return None
        back = self.top - seq
        if back >= WINDOW:
            return "replay"
        bit = 1 << back
        if self.mask & bit:
            return "duplicate"
        self.mask |= bit
        return None


class _Partial:
    __slots__ = ("base", "chunks", "epoch", "parts")

    def __init__(self, epoch: int, base: int, parts: int) -> None:
        self.epoch = epoch
        self.base = base
        self.parts = parts
        self.chunks: dict[int, bytes] = {}


class Memo:
    """The last version-2 single-datagram body parsed from each sender, kept so
    that the next one, equal in everything but its PEERS section, is not
    parsed again (in steady state every info is: only the ages in PEERS move).
    The message reused carries the PEERS of the first of the run; the core
    never reads PEERS (they are for other hosts' displays and version 1)."""

    __slots__ = ("_bodies", "_pending")

    def __init__(self) -> None:
        self._bodies: dict[Addr, tuple[bytes, Message | Hello]] = {}
        self._pending: tuple[Addr, bytes] | None = None

    def __call__(self, sender: Addr, version: int, chunk: bytes) -> Message | Hello | None:
        self._pending = None
        if version != 2:
            return None
        key = without_peers(chunk)
        known = self._bodies.get(sender)
        if known is not None and known[0] == key:
            return known[1]
        self._pending = (sender, key)
        return None

    def parsed(self, sender: Addr, body: Message | Hello) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == sender:
            self._bodies[sender] = (pending[1], body)

    def forget(self, sender: Addr) -> None:
        self._bodies.pop(sender, None)


def without_peers(chunk: bytes) -> bytes:
    """A version-2 body without its PEERS section (the whole body if there is
    none, or it cannot be found: a malformed body is parsed, and refused, anyway)."""
    span = peers_span(chunk)
    return chunk if span is None else chunk[: span[0]] + chunk[span[1] :]


class Inbox:
    """Per-receiver state for accepting datagrams from the other hosts."""

    __slots__ = ("_memo", "_newest", "_partials", "_windows", "drops", "self_id")

    def __init__(self, self_id: Addr) -> None:
        self.self_id = self_id
        self._memo = Memo()
        self._windows: dict[Addr, _Window] = {}
        self._partials: dict[Addr, _Partial] = {}
        self._newest: dict[Addr, tuple[int, int]] = {}
        """(epoch, first sequence number) of the newest message taken, per sender."""
        self.drops: Counter[str] = Counter()

    def decode(self, data: bytes, group_tag: int, config: CoreConfig) -> Datagram | None:
        """Authenticate and parse one datagram (rais.core.wire); None, and the
        drop counted by reason, if it is rejected."""
        try:
            return decode_datagram(
                data,
                group_tag=group_tag,
                keys=config.keys,
                versions=config.wire_versions,
                reuse=self._memo,
            )
        except DecodeError as exc:
            self.drops[exc.reason] += 1
            return None

    def accept(self, dgram: Datagram) -> Message | Hello | None:
        """The whole message (or hello) this datagram completes, or None
        (dropped or incomplete)."""
        sender = dgram.sender
        if sender == self.self_id:
            self.drops["own"] += 1
            return None
        window = self._windows.get(sender)
        if window is None:
            self._windows[sender] = _Window(dgram.epoch, dgram.seq)
        else:
            reason = window.accept(dgram.epoch, dgram.seq)
            if reason is not None:
                self.drops[reason] += 1
                return None
        message: Message | Hello | None
        if dgram.parts == 1:
            message = dgram.message if dgram.hello is None else dgram.hello
        else:
            message = self._reassemble(dgram)
        if message is None or isinstance(message, Hello):
            return message  # a hello says nothing that a newer info could undo
        key = (dgram.epoch, dgram.seq - dgram.part)
        newest = self._newest.get(sender)
        if newest is not None and key < newest:
            self.drops["stale"] += 1
            return None
        self._newest[sender] = key
        return message

    def _reassemble(self, dgram: Datagram) -> Message | Hello | None:
        base = dgram.seq - dgram.part
        partial = self._partials.get(dgram.sender)
        if (
            partial is None
            or partial.epoch != dgram.epoch
            or partial.base != base
            or partial.parts != dgram.parts
        ):
            if partial is not None and (dgram.epoch, base) < (partial.epoch, partial.base):
                self.drops["stale-part"] += 1
                return None
            partial = _Partial(dgram.epoch, base, dgram.parts)
            self._partials[dgram.sender] = partial
        partial.chunks[dgram.part] = dgram.chunk
        if len(partial.chunks) < partial.parts:
            return None
        del self._partials[dgram.sender]
        body = b"".join(partial.chunks[i] for i in range(partial.parts))
        try:
            return decode_body(body) if dgram.version == 1 else decode_sections(body)
        except DecodeError as exc:
            self.drops[exc.reason] += 1
            return None

    def forget(self, sender: Addr) -> None:
        """Drop reassembly state of a host that is gone (its replay window stays)."""
        self._partials.pop(sender, None)
        self._memo.forget(sender)
