"""The body of an info message: the host entry, peers, service-address table,
commands, byte by byte (docs/protocol.md, "Wire format"), and the one error the
decoders raise. Framing, signing and splitting are in ``rais.core.wire``."""

from __future__ import annotations

import struct
from typing import Literal

from rais.core.addr import Addr
from rais.core.messages import (
    FLAG_LEAVING,
    FLAG_OBSERVER,
    FLAG_OK,
    FLAG_QUIESCED,
    FLAG_SETTLED,
    AddrState,
    Command,
    HostEntry,
    Message,
    Op,
    PeerAge,
    ReqOp,
    Request,
    TableEntry,
)

MAX_CONTROL = 8
AGE_CAP = 0xFFFF

Reason = Literal["oversized", "truncated", "malformed", "version", "group", "auth", "unsupported"]


class DecodeError(Exception):
    """The one exception the decoder raises for any bad input.

    ``reason`` is one of "oversized", "truncated", "malformed", "version",
    "group", "auth" or "unsupported" (a version-2 section marked
    must-understand that this release does not know); the exception's text
    adds a short detail.
    """

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: Reason = reason


_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U32X2 = struct.Struct(">II")
_U16U8 = struct.Struct(">HB")
_U64 = struct.Struct(">Q")

_ALL_FLAGS = FLAG_OK | FLAG_QUIESCED | FLAG_OBSERVER | FLAG_LEAVING | FLAG_SETTLED
_STATES = {int(s): s for s in AddrState}
_OPS = {int(o): o for o in Op}
_REQOPS = {int(o): o for o in ReqOp}
_ALEN = {4: b"\x04", 16: b"\x10"}
_BYTE = [bytes((i,)) for i in range(256)]


def encode_addr(addr: Addr) -> bytes:
    """``addr``: a length byte (4 or 16) and the packed address."""
    try:
        return _ALEN[len(addr)] + addr
    except KeyError:
        raise ValueError(f"address must be 4 or 16 bytes, not {len(addr)}") from None


def encode_prefix(prefixlen: int, addr: Addr) -> bytes:
    """A prefix length byte, checked against the family of ``addr``."""
    if not 0 <= prefixlen <= 8 * len(addr):
        raise ValueError(f"prefix length {prefixlen} too long for a {len(addr)}-byte address")
    return _BYTE[prefixlen]


def encode_entry(e: HostEntry) -> bytes:
    flags = (
        (FLAG_OK if e.ok else 0)
        | (FLAG_QUIESCED if e.quiesced else 0)
        | (FLAG_OBSERVER if e.observer else 0)
        | (FLAG_LEAVING if e.leaving else 0)
        | (FLAG_SETTLED if e.settled else 0)
    )
    if not 1 <= len(e.control) <= MAX_CONTROL:
        raise ValueError(f"a host has 1..{MAX_CONTROL} control addresses, not {len(e.control)}")
    out = [_BYTE[flags], encode_addr(e.id), _U32X2.pack(e.load, e.capacity), _BYTE[len(e.control)]]
    out.extend(map(encode_addr, e.control))
    if e.preferred is None:
        out.append(b"\x00\x00")  # no preferred address; the prefix length is written as 0
    else:
        out.append(encode_addr(e.preferred))
        out.append(encode_prefix(e.prefixlen, e.preferred))
    out.append(_U16.pack(len(e.served)))
    for addr, state in e.served:
        if state not in _STATES:
            raise ValueError(f"bad address state {state!r}")
        out.append(encode_addr(addr))
        out.append(_BYTE[state])
    out.append(_BYTE[len(e.requests)])
    for r in e.requests:
        if r.op not in _REQOPS or (r.target is None) != (r.op == ReqOp.FAILBACK):
            raise ValueError(f"bad request {r!r}")
        out.append(_BYTE[r.op])
        out.append(encode_addr(r.address))
        out.append(b"\x00" if r.target is None else encode_addr(r.target))
        out.append(_U64.pack(r.stamp))
    return b"".join(out)


def encode_peer(p: PeerAge) -> bytes:
    return encode_addr(p.id) + _U16U8.pack(min(p.age_ms, AGE_CAP), 1 if p.live else 0)


def encode_rest(msg: Message) -> bytes:
    """The table and commands sections (everything after the peers)."""
    return encode_table(msg.table) + encode_commands(msg.commands)


def encode_table(table: tuple[TableEntry, ...]) -> bytes:
    out = [_U16.pack(len(table))]
    for t in table:
        out.append(encode_addr(t.address))
        out.append(encode_prefix(t.prefixlen, t.address))
        out.append(encode_addr(t.preferred))
        out.append(_U32.pack(t.orphan_ms))
    return b"".join(out)


def encode_commands(commands: tuple[Command, ...]) -> bytes:
    out = [_U16.pack(len(commands))]
    for c in commands:
        if c.op not in _OPS:
            raise ValueError(f"bad command op {c.op!r}")
        out.append(_BYTE[c.op])
        out.append(encode_addr(c.target))
        out.append(encode_addr(c.address))
        out.append(encode_prefix(c.prefixlen, c.address))
    return b"".join(out)


def encode_body(msg: Message) -> bytes:
    """The full message body with every peer (what :func:`decode_body` parses).

    Raises ValueError if the message cannot be represented on the wire.
    """
    try:
        peers = b"".join(map(encode_peer, msg.peers))
        return encode_entry(msg.entry) + _U16.pack(len(msg.peers)) + peers + encode_rest(msg)
    except struct.error as exc:
        raise ValueError(f"value out of range for its wire field: {exc}") from None


def _malformed(detail: str) -> DecodeError:
    return DecodeError("malformed", detail)


def decode_body(body: bytes) -> Message:
    """Parse a whole (reassembled) version-1 message body. Raises only DecodeError.

    "truncated" if the body ends inside a field, "malformed" for anything
    else that is not a valid encoding (the encoding is canonical: a body that
    parses re-encodes, with :func:`encode_body`, to the same bytes).
    """
    if type(body) is not bytes:
        body = bytes(body)
    b = body
    n = len(b)
    # Every address slice is followed by a read at or past its end, so a body
    # that ends inside an address raises IndexError or struct.error there.
    try:
        entry, pos = decode_entry(b, 0)
        peers, pos = decode_peers(b, pos)
        table, pos = decode_table(b, pos)
        commands, pos = decode_commands(b, pos)
    except (IndexError, struct.error):
        raise DecodeError("truncated", "message body ends inside a field") from None
    if pos != n:
        if pos > n:  # pragma: no cover - every address is followed by a checked read
            raise DecodeError("truncated", "message body ends inside a field")
        raise _malformed(f"{n - pos} trailing bytes after the commands")
    return Message(entry=entry, peers=peers, table=table, commands=commands)


# The part decoders read ``b`` from ``pos`` and return what they parsed and
# the position after it. They raise DecodeError("malformed") for a bad value,
# and let IndexError / struct.error escape when ``b`` ends inside a field
# (the caller turns those into "truncated").


def decode_entry(b: bytes, pos: int) -> tuple[HostEntry, int]:
    flags = b[pos]
    if flags & ~_ALL_FLAGS:
        raise _malformed(f"unknown flag bits {flags:#04x}")
    alen = b[pos + 1]
    if alen != 4 and alen != 16:
        raise _malformed(f"id address length {alen}")
    host_id = b[pos + 2 : pos + 2 + alen]
    pos += 2 + alen
    load, capacity = _U32X2.unpack_from(b, pos)
    count = b[pos + 8]
    pos += 9
    if not 1 <= count <= MAX_CONTROL:
        raise _malformed(f"{count} control addresses")
    control = []
    for _ in range(count):
        alen = b[pos]
        if alen != 4 and alen != 16:
            raise _malformed(f"control address length {alen}")
        end = pos + 1 + alen
        control.append(b[pos + 1 : end])
        pos = end
    alen = b[pos]
    if alen != 0 and alen != 4 and alen != 16:
        raise _malformed(f"preferred address length {alen}")
    end = pos + 1 + alen
    preferred = b[pos + 1 : end] if alen else None
    prefixlen = b[end]
    if prefixlen > 8 * alen:
        raise _malformed(f"preferred prefix length {prefixlen}")
    (count,) = _U16.unpack_from(b, end + 1)
    pos = end + 3
    served = []
    for _ in range(count):
        alen = b[pos]
        if alen != 4 and alen != 16:
            raise _malformed(f"served address length {alen}")
        end = pos + 1 + alen
        state = _STATES.get(b[end])
        if state is None:
            raise _malformed(f"address state {b[end]}")
        served.append((b[pos + 1 : end], state))
        pos = end + 1
    requests = []
    count = b[pos]
    pos += 1
    for _ in range(count):
        rop = _REQOPS.get(b[pos])
        if rop is None:
            raise _malformed(f"request op {b[pos]}")
        alen = b[pos + 1]
        if alen != 4 and alen != 16:
            raise _malformed(f"request address length {alen}")
        end = pos + 2 + alen
        raddr = b[pos + 2 : end]
        alen = b[end]
        if (alen != 0) if rop == ReqOp.FAILBACK else (alen != 4 and alen != 16):
            raise _malformed(f"request target address length {alen}")
        pos = end + 1 + alen
        (stamp,) = _U64.unpack_from(b, pos)
        requests.append(Request(rop, raddr, b[end + 1 : pos] if alen else None, stamp))
        pos += 8
    entry = HostEntry(
        id=host_id,
        control=tuple(control),
        ok=bool(flags & FLAG_OK),
        quiesced=bool(flags & FLAG_QUIESCED),
        observer=bool(flags & FLAG_OBSERVER),
        leaving=bool(flags & FLAG_LEAVING),
        settled=bool(flags & FLAG_SETTLED),
        load=load,
        capacity=capacity,
        preferred=preferred,
        prefixlen=prefixlen,
        served=tuple(served),
        requests=tuple(requests),
    )
    return entry, pos


def decode_peers(b: bytes, pos: int) -> tuple[tuple[PeerAge, ...], int]:
    (count,) = _U16.unpack_from(b, pos)
    pos += 2
    peers = []
    for _ in range(count):
        alen = b[pos]
        if alen != 4 and alen != 16:
            raise _malformed(f"peer address length {alen}")
        end = pos + 1 + alen
        age, live = _U16U8.unpack_from(b, end)
        if live > 1:
            raise _malformed(f"peer live flag {live}")
        peers.append(PeerAge(id=b[pos + 1 : end], age_ms=age, live=live == 1))
        pos = end + 3
    return tuple(peers), pos


def decode_table(b: bytes, pos: int) -> tuple[tuple[TableEntry, ...], int]:
    (count,) = _U16.unpack_from(b, pos)
    pos += 2
    table = []
    for _ in range(count):
        alen = b[pos]
        if alen != 4 and alen != 16:
            raise _malformed(f"table address length {alen}")
        end = pos + 1 + alen
        address = b[pos + 1 : end]
        prefixlen = b[end]
        if prefixlen > 8 * alen:
            raise _malformed(f"table prefix length {prefixlen}")
        alen = b[end + 1]
        if alen != 4 and alen != 16:
            raise _malformed(f"table preferred address length {alen}")
        pos = end + 2
        end = pos + alen
        (orphan,) = _U32.unpack_from(b, end)
        table.append(
            TableEntry(address=address, prefixlen=prefixlen, preferred=b[pos:end], orphan_ms=orphan)
        )
        pos = end + 4
    return tuple(table), pos


def decode_commands(b: bytes, pos: int) -> tuple[tuple[Command, ...], int]:
    (count,) = _U16.unpack_from(b, pos)
    pos += 2
    commands = []
    for _ in range(count):
        op = _OPS.get(b[pos])
        if op is None:
            raise _malformed(f"command op {b[pos]}")
        alen = b[pos + 1]
        if alen != 4 and alen != 16:
            raise _malformed(f"command target address length {alen}")
        pos += 2
        end = pos + alen
        target = b[pos:end]
        alen = b[end]
        if alen != 4 and alen != 16:
            raise _malformed(f"command address length {alen}")
        pos = end + 1
        end = pos + alen
        prefixlen = b[end]
        if prefixlen > 8 * alen:
            raise _malformed(f"command prefix length {prefixlen}")
        commands.append(
            Command(
                op=op,
                target=target,
                address=b[pos:end],
                prefixlen=prefixlen,
            )
        )
        pos = end + 1
    return tuple(commands), pos
