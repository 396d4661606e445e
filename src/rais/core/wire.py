"""The rais wire format: encode, sign, split and parse info messages.

A :class:`~rais.core.messages.Message` travels as one or more UDP datagrams
of at most :data:`MAX_DATAGRAM` bytes. Each datagram carries a fixed header
(magic, version, key hint, group tag, sender, epoch, sequence number, part
and part count), a chunk of the message body and an HMAC-SHA256 over all of
it. The byte-by-byte layout, the key-rotation rule, the splitting rule and
the replay rule (which the core, not this module, enforces) are in
docs/protocol.md ("Wire format").

This module is sans-I/O and stateless: it only turns values into bytes and
back. The decoder raises exactly one exception type, :class:`DecodeError`,
for any input it rejects; the encoder raises ``ValueError`` for a message or
argument that cannot be represented on the wire (a bug in the caller).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Sequence
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
    Datagram,
    HostEntry,
    Message,
    Op,
    PeerAge,
    ReqOp,
    Request,
    TableEntry,
)

__all__ = [
    "MAX_DATAGRAM",
    "VERSION",
    "DecodeError",
    "decode",
    "decode_body",
    "encode",
    "encode_body",
    "group_tag",
]

MAX_DATAGRAM = 1400
"""Largest datagram sent or accepted, in bytes (UDP payload)."""

VERSION = 1
"""Wire format version carried in byte 2 of every datagram."""

MAGIC = b"RS"
MAC_SIZE = 32
MAX_PARTS = 255
MAX_CONTROL = 8
AGE_CAP = 0xFFFF

Reason = Literal["oversized", "truncated", "malformed", "version", "group", "auth"]


class DecodeError(Exception):
    """The one exception the decoder raises for any bad input.

    ``reason`` is one of "oversized", "truncated", "malformed", "version",
    "group" or "auth"; the exception's text adds a short detail.
    """

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: Reason = reason


# Header: magic, version, key hint, group tag, sender address length (9 bytes),
# then the sender's address, then epoch, seq, part, parts, chunk length (12 bytes).
_HEAD = struct.Struct(">2sBBIB")
_TAIL = struct.Struct(">IIBBH")
_OVERHEAD = _HEAD.size + _TAIL.size + MAC_SIZE  # plus the sender's address

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U32X2 = struct.Struct(">II")
_U16U8 = struct.Struct(">HB")

_ALL_FLAGS = FLAG_OK | FLAG_QUIESCED | FLAG_OBSERVER | FLAG_LEAVING | FLAG_SETTLED
_STATES = {int(s): s for s in AddrState}
_OPS = {int(o): o for o in Op}
_REQOPS = {int(o): o for o in ReqOp}
_U64 = struct.Struct(">Q")
_ALEN = {4: b"\x04", 16: b"\x10"}
_BYTE = [bytes((i,)) for i in range(256)]


def group_tag(name: str) -> int:
    """The group tag for a group name: the first 4 bytes of SHA-256(name), big-endian."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


def _key_hint(key: bytes) -> int:
    return hashlib.sha256(key).digest()[0]


# ---------------------------------------------------------------- encoding


def _addr(addr: Addr) -> bytes:
    try:
        return _ALEN[len(addr)] + addr
    except KeyError:
        raise ValueError(f"address must be 4 or 16 bytes, not {len(addr)}") from None


def _prefix(prefixlen: int, addr: Addr) -> bytes:
    if not 0 <= prefixlen <= 8 * len(addr):
        raise ValueError(f"prefix length {prefixlen} too long for a {len(addr)}-byte address")
    return _BYTE[prefixlen]


def _encode_entry(e: HostEntry) -> bytes:
    flags = (
        (FLAG_OK if e.ok else 0)
        | (FLAG_QUIESCED if e.quiesced else 0)
        | (FLAG_OBSERVER if e.observer else 0)
        | (FLAG_LEAVING if e.leaving else 0)
        | (FLAG_SETTLED if e.settled else 0)
    )
    if not 1 <= len(e.control) <= MAX_CONTROL:
        raise ValueError(f"a host has 1..{MAX_CONTROL} control addresses, not {len(e.control)}")
    out = [_BYTE[flags], _addr(e.id), _U32X2.pack(e.load, e.capacity), _BYTE[len(e.control)]]
    out.extend(map(_addr, e.control))
    if e.preferred is None:
        out.append(b"\x00\x00")  # no preferred address; the prefix length is written as 0
    else:
        out.append(_addr(e.preferred))
        out.append(_prefix(e.prefixlen, e.preferred))
    out.append(_U16.pack(len(e.served)))
    for addr, state in e.served:
        if state not in _STATES:
            raise ValueError(f"bad address state {state!r}")
        out.append(_addr(addr))
        out.append(_BYTE[state])
    out.append(_BYTE[len(e.requests)])
    for r in e.requests:
        if r.op not in _REQOPS or (r.target is None) != (r.op == ReqOp.FAILBACK):
            raise ValueError(f"bad request {r!r}")
        out.append(_BYTE[r.op])
        out.append(_addr(r.address))
        out.append(b"\x00" if r.target is None else _addr(r.target))
        out.append(_U64.pack(r.stamp))
    return b"".join(out)


def _encode_peer(p: PeerAge) -> bytes:
    return _addr(p.id) + _U16U8.pack(min(p.age_ms, AGE_CAP), 1 if p.live else 0)


def _encode_rest(msg: Message) -> bytes:
    """The table and commands sections (everything after the peers)."""
    out = [_U16.pack(len(msg.table))]
    for t in msg.table:
        out.append(_addr(t.address))
        out.append(_prefix(t.prefixlen, t.address))
        out.append(_addr(t.preferred))
        out.append(_U32.pack(t.orphan_ms))
    out.append(_U16.pack(len(msg.commands)))
    for c in msg.commands:
        if c.op not in _OPS:
            raise ValueError(f"bad command op {c.op!r}")
        out.append(_BYTE[c.op])
        out.append(_addr(c.target))
        out.append(_addr(c.address))
        out.append(_prefix(c.prefixlen, c.address))
    return b"".join(out)


def encode_body(msg: Message) -> bytes:
    """The full message body with every peer (what :func:`decode_body` parses).

    Raises ValueError if the message cannot be represented on the wire.
    """
    try:
        peers = b"".join(map(_encode_peer, msg.peers))
        return _encode_entry(msg.entry) + _U16.pack(len(msg.peers)) + peers + _encode_rest(msg)
    except struct.error as exc:
        raise ValueError(f"value out of range for its wire field: {exc}") from None


def encode(
    msg: Message,
    *,
    group_tag: int,
    sender: Addr,
    epoch: int,
    seq: int,
    key: bytes,
    max_size: int = MAX_DATAGRAM,
) -> tuple[list[bytes], int]:
    """Encode ``msg`` into 1..255 signed datagrams of at most ``max_size`` bytes.

    Part ``i`` carries sequence number ``seq + i``. Returns the datagrams and
    the number of peers included: the peers are best effort, as many of
    ``msg.peers`` (in order, from the first) as fit in the room left in the
    datagrams that the entry, table and commands need; a datagram is never
    added just for peers. Everything else is always sent in full.

    Raises ValueError if the message or an argument cannot be represented
    (bad address length, field out of range, more than 255 datagrams needed,
    sequence number overflow, ``max_size`` too small or above MAX_DATAGRAM).
    """
    alen = len(sender)
    if alen != 4 and alen != 16:
        raise ValueError(f"sender address must be 4 or 16 bytes, not {alen}")
    if not key:
        raise ValueError("empty key")
    overhead = _OVERHEAD + alen
    if not overhead < max_size <= MAX_DATAGRAM:
        raise ValueError(f"max_size must be in {overhead + 1}..{MAX_DATAGRAM}, not {max_size}")
    cap = max_size - overhead
    try:
        entry = _encode_entry(msg.entry)
        rest = _encode_rest(msg)
        base = len(entry) + 2 + len(rest)
        n = -(-base // cap)
        if n > MAX_PARTS:
            raise ValueError(f"message of {base} bytes needs {n} datagrams, max {MAX_PARTS}")
        if not 0 <= seq <= 0xFFFFFFFF - (n - 1):
            raise ValueError(f"sequence numbers {seq}..{seq + n - 1} out of u32 range")
        spare = n * cap - base
        peers = []
        for p in msg.peers:
            size = 4 + len(p.id)
            if size > spare:
                break
            spare -= size
            peers.append(_encode_peer(p))
        body = entry + _U16.pack(len(peers)) + b"".join(peers) + rest
        head = _HEAD.pack(MAGIC, VERSION, _key_hint(key), group_tag, alen) + sender
        out = []
        for i in range(n):
            chunk = body[i * cap : (i + 1) * cap]
            signed = head + _TAIL.pack(epoch, seq + i, i, n, len(chunk)) + chunk
            out.append(signed + hmac.digest(key, signed, "sha256"))
    except struct.error as exc:
        raise ValueError(f"value out of range for its wire field: {exc}") from None
    return out, len(peers)


# ---------------------------------------------------------------- decoding


def _authentic(signed: bytes, mac: bytes, hint: int, keys: Sequence[bytes]) -> bool:
    if len(keys) > 1:
        # Try the key the sender names first; sorted() is stable.
        keys = sorted(keys, key=lambda k: _key_hint(k) != hint)
    return any(hmac.compare_digest(hmac.digest(key, signed, "sha256"), mac) for key in keys if key)


def decode(data: bytes, *, group_tag: int, keys: Sequence[bytes]) -> Datagram:
    """Check and parse one datagram.

    Checks the size, the header, the group tag and the HMAC (accepted if any
    of ``keys`` verifies it, trying first the key named by the key hint). A
    single-part datagram comes back parsed in ``message`` (``chunk`` is
    empty); a part of a multi-part message comes back with ``message`` None
    and its raw slice of the body in ``chunk``. Raises only DecodeError.
    """
    if type(data) is not bytes:
        data = bytes(data)
    n = len(data)
    if n > MAX_DATAGRAM:
        raise DecodeError("oversized", f"{n} bytes")
    if n < _HEAD.size:
        raise DecodeError("truncated", "header")
    magic, version, hint, tag, alen = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError("malformed", "bad magic")
    if version != VERSION:
        raise DecodeError("version", f"version {version}")
    if tag != group_tag:
        raise DecodeError("group", f"group tag {tag:#010x}")
    if alen != 4 and alen != 16:
        raise DecodeError("malformed", f"sender address length {alen}")
    start = _HEAD.size + alen + _TAIL.size
    if n < start:
        raise DecodeError("truncated", "header")
    epoch, seq, part, parts, clen = _TAIL.unpack_from(data, _HEAD.size + alen)
    end = start + clen
    if n < end + MAC_SIZE:
        raise DecodeError("truncated", f"chunk length {clen}, {n - start} bytes follow header")
    if n > end + MAC_SIZE:
        raise DecodeError("malformed", f"chunk length {clen}, {n - start} bytes follow header")
    if part >= parts:
        raise DecodeError("malformed", f"part {part} of {parts}")
    if not _authentic(data[:end], data[end:], hint, keys):
        raise DecodeError("auth", "no key verifies the HMAC")
    chunk = data[start:end]
    message = None
    if parts == 1:
        message = decode_body(chunk)
        chunk = b""
    return Datagram(
        group_tag=tag,
        sender=data[_HEAD.size : _HEAD.size + alen],
        epoch=epoch,
        seq=seq,
        part=part,
        parts=parts,
        message=message,
        chunk=chunk,
        size=n,
    )


def _malformed(detail: str) -> DecodeError:
    return DecodeError("malformed", detail)


def decode_body(body: bytes) -> Message:
    """Parse a whole (reassembled) message body. Raises only DecodeError.

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
        # ---- entry
        flags = b[0]
        if flags & ~_ALL_FLAGS:
            raise _malformed(f"unknown flag bits {flags:#04x}")
        alen = b[1]
        if alen != 4 and alen != 16:
            raise _malformed(f"id address length {alen}")
        pos = 2 + alen
        host_id = b[2:pos]
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
        # ---- peers
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
        # ---- table
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
                TableEntry(
                    address=address, prefixlen=prefixlen, preferred=b[pos:end], orphan_ms=orphan
                )
            )
            pos = end + 4
        # ---- commands
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
    except (IndexError, struct.error):
        raise DecodeError("truncated", "message body ends inside a field") from None
    if pos != n:
        if pos > n:  # pragma: no cover - every address is followed by a checked read
            raise DecodeError("truncated", "message body ends inside a field")
        raise _malformed(f"{n - pos} trailing bytes after the commands")
    return Message(entry=entry, peers=tuple(peers), table=tuple(table), commands=tuple(commands))
