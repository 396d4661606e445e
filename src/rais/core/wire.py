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

import functools
import hashlib
import hmac
import struct
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from rais.core.addr import Addr
from rais.core.body import (
    AGE_CAP,
    MAX_CONTROL,
    DecodeError,
    decode_body,
    encode_body,
    encode_entry,
    encode_peer,
    encode_rest,
)
from rais.core.messages import Datagram, Hello, Message
from rais.core.sections import (
    SECTION_OVERHEAD,
    decode_sections,
    encode_hello,
    peers_section,
    peers_span,
    split_info,
)

__all__ = [
    "AGE_CAP",
    "MAX_CONTROL",
    "MAX_DATAGRAM",
    "VERSION",
    "DecodeError",
    "decode",
    "decode_any",
    "decode_body",
    "encode",
    "encode_any",
    "encode_body",
    "encode_hello_datagram",
    "group_tag",
    "steady",
]

MAX_DATAGRAM = 1400
"""Largest datagram sent or accepted, in bytes (UDP payload)."""

VERSION = 1
"""The first wire format version (byte 2 of every datagram); version 2 is the
sectioned body of rais.core.sections. Both share the datagram header."""

VERSIONS = (1, 2)
"""The wire versions this module encodes and decodes."""

MAGIC = b"RS"
MAC_SIZE = 32
MAX_PARTS = 255
# Header: magic, version, key hint, group tag, sender address length (9 bytes),
# then the sender's address, then epoch, seq, part, parts, chunk length (12 bytes).
_HEAD = struct.Struct(">2sBBIB")
_TAIL = struct.Struct(">IIBBH")
_OVERHEAD = _HEAD.size + _TAIL.size + MAC_SIZE  # plus the sender's address
_U16 = struct.Struct(">H")


def group_tag(name: str) -> int:
    """The group tag for a group name: the first 4 bytes of SHA-256(name), big-endian."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


def _key_hint(key: bytes) -> int:
    return hashlib.sha256(key).digest()[0]


def encode(
    msg: Message,
    *,
    group_tag: int,
    sender: Addr,
    epoch: int,
    seq: int,
    key: bytes,
    max_size: int = MAX_DATAGRAM,
    version: int = VERSION,
    parts: tuple[bytes, bytes] | None = None,
) -> tuple[list[bytes], int]:
    """Encode ``msg`` into 1..255 signed datagrams of at most ``max_size`` bytes,
    in wire ``version`` 1 or 2 (version 1 leaves out what it cannot carry:
    address-set members, the pause and the announced versions and features).

    Part ``i`` carries sequence number ``seq + i``. Returns the datagrams and
    the number of peers included: the peers are best effort, as many of
    ``msg.peers`` (in order, from the first) as fit in the room left in the
    datagrams that the entry, table and commands need; a datagram is never
    added just for peers. Everything else is always sent in full.

    ``parts``: version 2's body before and after PEERS, if the caller has it
    (``split_info(msg)``, kept from an earlier message that equals this one).

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
        if version == 1:
            head = encode_entry(msg.entry)
            tail = encode_rest(msg)
            fixed = 2  # the u16 peer count
        elif version == 2:
            head, tail = split_info(msg) if parts is None else parts
            fixed = len(peers_section([]))
        else:
            raise ValueError(f"unknown wire version {version}")
        base = len(head) + fixed + len(tail)
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
            peers.append(encode_peer(p))
        count = _U16.pack(len(peers))
        middle = count + b"".join(peers) if version == 1 else peers_section(peers)
        body = head + middle + tail
        out = _frame(body, n, cap, version, group_tag, sender, epoch, seq, key)
    except struct.error as exc:
        raise ValueError(f"value out of range for its wire field: {exc}") from None
    return out, len(peers)


def body_parts(msg: Message) -> tuple[bytes, bytes]:
    """Version 2's body of ``msg`` before and after its PEERS (for ``encode``'s
    ``parts``). Raises ValueError as ``encode`` does."""
    try:
        return split_info(msg)
    except struct.error as exc:
        raise ValueError(f"value out of range for its wire field: {exc}") from None


def _frame(
    body: bytes,
    n: int,
    cap: int,
    version: int,
    group_tag: int,
    sender: Addr,
    epoch: int,
    seq: int,
    key: bytes,
) -> list[bytes]:
    head = _HEAD.pack(MAGIC, version, _key_hint(key), group_tag, len(sender)) + sender
    out = []
    for i in range(n):
        chunk = body[i * cap : (i + 1) * cap]
        signed = head + _TAIL.pack(epoch, seq + i, i, n, len(chunk)) + chunk
        out.append(signed + _mac(key, signed))
    return out


def encode_hello_datagram(
    hello: Hello, *, group_tag: int, sender: Addr, epoch: int, seq: int, key: bytes
) -> bytes:
    """One signed version-2 datagram carrying only ``hello`` (sequence number ``seq``)."""
    if len(sender) not in (4, 16) or not key or not 0 <= seq <= 0xFFFFFFFF:
        raise ValueError("bad sender, key or sequence number")
    body = encode_hello(hello)
    if len(body) > MAX_DATAGRAM - _OVERHEAD - len(sender):
        raise ValueError("hello too large for one datagram")
    try:
        return _frame(body, 1, len(body) or 1, 2, group_tag, sender, epoch, seq, key)[0]
    except struct.error as exc:
        raise ValueError(f"value out of range for its wire field: {exc}") from None


def encode_any(item: Message | Hello, version: int) -> bytes:
    """The whole body of ``item`` in wire ``version``, every peer included (what
    :func:`decode_any` parses: a decoded body re-encodes to the same bytes)."""
    if isinstance(item, Hello):
        if version != 2:
            raise ValueError("a hello is a version-2 body")
        return encode_hello(item)
    if version == 1:
        return encode_body(item)
    head, tail = split_info(item)
    try:
        return head + peers_section([encode_peer(p) for p in item.peers]) + tail
    except struct.error as exc:
        raise ValueError(f"value out of range for its wire field: {exc}") from None


def decode_any(body: bytes, version: int) -> Message | Hello:
    """Parse a whole (reassembled) body of wire ``version``. Raises only DecodeError."""
    if version == 1:
        return decode_body(body)
    return decode_sections(body)


# ---------------------------------------------------------------- decoding


def _authentic(signed: bytes, mac: bytes, hint: int, keys: Sequence[bytes]) -> bool:
    if len(keys) > 1:
        # Try the key the sender names first; sorted() is stable.
        keys = sorted(keys, key=lambda k: _key_hint(k) != hint)
    return any(hmac.compare_digest(_mac(key, signed), mac) for key in keys if key)


_BLOCK = 64
"""SHA-256's block size in bytes."""


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


@functools.lru_cache(maxsize=8)
def _pads(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """HMAC-SHA256's inner and outer hashes with ``key`` already absorbed
    (RFC 2104). A memo, not state: copying them costs a datagram a fraction
    of what ``hmac.digest`` pays to key afresh at every call (after a sleep,
    with cold caches, about 10 against 50 µs here)."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD))


def _mac(key: bytes, signed: bytes) -> bytes:
    """HMAC-SHA256 of ``signed`` under ``key``."""
    inner, outer = _pads(key)
    h = inner.copy()
    h.update(signed)
    o = outer.copy()
    o.update(h.digest())
    return o.digest()


class Reuse(Protocol):
    """A memo of parsed bodies (rais.core.inbox): ``reuse(sender, version,
    chunk)`` is a body parsed before that equals this one in all that counts,
    or None; ``parsed(sender, body)`` is told of each body parsed."""

    def __call__(self, sender: Addr, version: int, chunk: bytes) -> Message | Hello | None: ...

    def parsed(self, sender: Addr, body: Message | Hello) -> None: ...


def decode(
    data: bytes,
    *,
    group_tag: int,
    keys: Sequence[bytes],
    versions: Sequence[int] = VERSIONS,
    reuse: Reuse | None = None,
) -> Datagram:
    """Check and parse one datagram (a single-part body through ``reuse``, if given).

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
    if version not in versions:
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
    sender = data[_HEAD.size : _HEAD.size + alen]
    message = hello = None
    if parts == 1:
        parsed = None if reuse is None else reuse(sender, version, chunk)
        if parsed is None:
            parsed = decode_body(chunk) if version == 1 else decode_sections(chunk)
            if reuse is not None:
                reuse.parsed(sender, parsed)
        if isinstance(parsed, Hello):
            hello = parsed
        else:
            message = parsed
        chunk = b""
    return Datagram(
        group_tag=tag,
        sender=sender,
        epoch=epoch,
        seq=seq,
        part=part,
        parts=parts,
        message=message,
        chunk=chunk,
        size=n,
        version=version,
        hello=hello,
    )


# ---------------------------------------------------------------- steadiness


class Steady(NamedTuple):
    """What stays the same in a sender's datagrams while its state does not
    change (rais.drivers.quiet): its length and its bytes but for the sequence
    number, the PEERS records (their ages move with every heartbeat) and the HMAC."""

    sender: bytes
    length: int
    ranges: tuple[tuple[int, bytes], ...]
    """(offset, bytes) pieces of the datagram, in order."""


def steady(data: bytes) -> Steady | None:
    """The steady part of a single-datagram version-2 message, or None for
    anything else (version 1, a part of a longer message, a malformed header).
    It checks nothing else: call it on authenticated datagrams only."""
    n = len(data)
    if n < _HEAD.size or data[:2] != MAGIC or data[2] != 2:
        return None
    alen = data[_HEAD.size - 1]
    tail = _HEAD.size + alen
    start = tail + _TAIL.size
    if alen not in (4, 16) or n < start + MAC_SIZE:
        return None
    _, _, _, parts, clen = _TAIL.unpack_from(data, tail)
    end = start + clen
    if parts != 1 or end + MAC_SIZE != n:
        return None
    seq = tail + 4
    cuts = [(seq, seq + 4)]
    span = peers_span(data[start:end])
    if span is not None:
        cuts.append((start + span[0] + SECTION_OVERHEAD, start + span[1]))
    ranges, pos = [], 0
    for cut_from, cut_to in (*cuts, (end, n)):
        if cut_from > pos:
            ranges.append((pos, data[pos:cut_from]))
        pos = cut_to
    return Steady(data[_HEAD.size : tail], n, tuple(ranges))
