"""The body of a version-2 message: typed, length-prefixed sections
(docs/protocol.md, "Wire format", "Version 2").

Every section is ``type`` (u8), ``length`` (u32) and ``length`` bytes of
payload. The low 7 bits of the type are the section's number; the high bit
(0x80) marks it *must-understand*. Sections come in strictly ascending order
of number. A receiver skips a section whose number it does not know, unless
it is must-understand: then it drops the whole message ("unsupported"). The
sections this release knows decode as strictly as version 1 (canonical: a body
that parses re-encodes to the same bytes; skipped sections are kept in
``Message.unknown`` for that).

An info carries FEATURES, ENTRY, PEERS, TABLE and COMMANDS, and SETS, PAUSE,
PAUSED and GUARD when it has something to say in them. A body with FEATURES and no ENTRY is a
*hello* (rais.core.messages.Hello).
"""

from __future__ import annotations

import dataclasses
import re
import struct

from rais.core.addr import Addr
from rais.core.body import (
    DecodeError,
    decode_commands,
    decode_entry,
    decode_peers,
    decode_table,
    encode_addr,
    encode_commands,
    encode_entry,
    encode_prefix,
    encode_table,
)
from rais.core.messages import (
    Command,
    GuardInfo,
    Hello,
    HostEntry,
    Message,
    PausedPeer,
    TableEntry,
)

MUST = 0x80
FEATURES = 0x01
ENTRY = MUST | 0x02
PEERS = 0x03
TABLE = MUST | 0x04
COMMANDS = MUST | 0x05
SETS = 0x06
PAUSE = 0x07
PAUSED = 0x08
GUARD = 0x09

_KNOWN = {
    t & 0x7F: t for t in (FEATURES, ENTRY, PEERS, TABLE, COMMANDS, SETS, PAUSE, PAUSED, GUARD)
}
_HEAD = struct.Struct(">BI")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U32X3 = struct.Struct(">III")
_GUARD_HEAD = struct.Struct(">IBQH")
_G_VOTE = 0x01
_G_QUORATE = 0x02
_NAME = re.compile(rb"[a-z0-9][a-z0-9-]{0,31}")
SECTION_OVERHEAD = _HEAD.size

Extras = tuple[tuple[Addr, int], ...]


def section(kind: int, payload: bytes) -> bytes:
    return _HEAD.pack(kind, len(payload)) + payload


def _malformed(detail: str) -> DecodeError:
    return DecodeError("malformed", detail)


# ---------------------------------------------------------------- encoding


def encode_features(versions: tuple[int, ...], features: tuple[str, ...]) -> bytes:
    if list(versions) != sorted(set(versions)) or not all(0 < v < 256 for v in versions):
        raise ValueError(f"bad versions {versions!r}")
    if list(features) != sorted(set(features)):
        raise ValueError(f"features must be sorted and unique: {features!r}")
    out = [bytes((len(versions),)), bytes(versions), bytes((len(features),))]
    for name in features:
        raw = name.encode("ascii")
        if not _NAME.fullmatch(raw):
            raise ValueError(f"bad feature name {name!r}")
        out.append(bytes((len(raw),)) + raw)
    return b"".join(out)


def _extras(extras: Extras) -> bytes:
    out = [bytes((len(extras),))]
    for addr, prefixlen in extras:
        out.append(encode_addr(addr) + encode_prefix(prefixlen, addr))
    return b"".join(out)


def encode_sets(msg: Message) -> bytes:
    """The SETS payload, or b"" when no entry, row or command has extras."""
    lists = [msg.entry.extras, *(t.extras for t in msg.table), *(c.extras for c in msg.commands)]
    if not any(lists):
        return b""
    if msg.entry.extras and msg.entry.preferred is None:
        raise ValueError("set members without a preferred address")
    return b"".join(map(_extras, lists))


def split_info(msg: Message) -> tuple[bytes, bytes]:
    """The body of ``msg`` before and after its PEERS section."""
    e = msg.entry
    if 2 not in e.versions:
        raise ValueError(f"a version-2 message from a host that speaks {e.versions}")
    if not 0 <= e.pause_ms <= 0xFFFFFFFF:
        raise ValueError(f"pause_ms {e.pause_ms} out of range")
    parts: list[tuple[int, bytes]] = [
        (FEATURES, encode_features(e.versions, e.features)),
        (ENTRY, encode_entry(e)),
        (TABLE, encode_table(msg.table)),
        (COMMANDS, encode_commands(msg.commands)),
    ]
    sets = encode_sets(msg)
    if sets:
        parts.append((SETS, sets))
    if e.pause_ms:
        parts.append((PAUSE, _U32.pack(e.pause_ms)))
    if msg.paused:
        parts.append((PAUSED, encode_paused(msg.paused)))
    if msg.guard is not None:
        parts.append((GUARD, encode_guard(msg.guard)))
    parts.extend(msg.unknown)
    parts.sort(key=lambda p: p[0] & 0x7F)
    numbers = [t & 0x7F for t, _ in parts]
    if len(set(numbers)) != len(numbers) or PEERS in numbers:
        raise ValueError("two sections with one number")
    head = b"".join(section(t, p) for t, p in parts if t & 0x7F < PEERS)
    tail = b"".join(section(t, p) for t, p in parts if t & 0x7F > PEERS)
    return head, tail


def peers_span(body: bytes) -> tuple[int, int] | None:
    """Where the PEERS section of a version-2 body is, header included (start,
    end), or None if it has none or it cannot be found."""
    pos, n = 0, len(body)
    while pos + _HEAD.size <= n:
        kind, size = _HEAD.unpack_from(body, pos)
        end = pos + _HEAD.size + size
        if kind == PEERS:
            return (pos, end) if end <= n else None
        if kind & 0x7F > PEERS:
            break
        pos = end
    return None


def encode_paused(paused: tuple[PausedPeer, ...]) -> bytes:
    out = [_U16.pack(len(paused))]
    for p in paused:
        if not 0 < p.remaining_ms <= 0xFFFFFFFF or p.entry.pause_ms:
            raise ValueError(f"bad paused peer {p!r}")
        out.append(_U32X3.pack(p.remaining_ms, min(p.age_ms, 0xFFFFFFFF), p.epoch))
        out.append(encode_entry(p.entry))
    return b"".join(out)


def encode_guard(g: GuardInfo) -> bytes:
    """GUARD: u32 stamp, u8 flags (0x01 a vote follows, 0x02 quorate), u64
    token, u16 echo count, the vote's address, then per echo an address and a
    u32 stamp."""
    flags = (_G_VOTE if g.vote is not None else 0) | (_G_QUORATE if g.quorate else 0)
    out = [_GUARD_HEAD.pack(g.stamp, flags, g.token, len(g.echoes))]
    if g.vote is not None:
        out.append(encode_addr(g.vote))
    for host, stamp in g.echoes:
        out.append(encode_addr(host) + _U32.pack(stamp))
    return b"".join(out)


def peers_section(records: list[bytes]) -> bytes:
    return section(PEERS, _U16.pack(len(records)) + b"".join(records))


def encode_hello(hello: Hello) -> bytes:
    parts = [(FEATURES, encode_features(hello.versions, hello.features)), *hello.unknown]
    if hello.paused:
        parts.append((PAUSED, encode_paused(hello.paused)))
    parts.sort(key=lambda p: p[0] & 0x7F)
    return b"".join(section(t, p) for t, p in parts)


# ---------------------------------------------------------------- decoding


def decode_features(b: bytes) -> tuple[tuple[int, ...], tuple[str, ...]]:
    n = b[0]
    versions = tuple(b[1 : 1 + n])
    if len(versions) != n:
        raise IndexError
    if not n or list(versions) != sorted(set(versions)) or versions[0] == 0:
        raise _malformed(f"versions {versions!r}")
    if 2 not in versions:
        raise _malformed(f"a version-2 message from a host that speaks {versions!r}")
    pos = 1 + n
    count = b[pos]
    pos += 1
    names: list[str] = []
    for _ in range(count):
        size = b[pos]
        raw = b[pos + 1 : pos + 1 + size]
        if len(raw) != size:
            raise IndexError
        if not _NAME.fullmatch(raw):
            raise _malformed(f"feature name {raw!r}")
        name = raw.decode("ascii")
        if names and name <= names[-1]:
            raise _malformed("features not sorted and unique")
        names.append(name)
        pos += 1 + size
    if pos != len(b):
        raise _malformed("trailing bytes in the features section")
    return versions, tuple(names)


def _decode_extras(b: bytes, pos: int) -> tuple[Extras, int]:
    count = b[pos]
    pos += 1
    out = []
    for _ in range(count):
        alen = b[pos]
        if alen != 4 and alen != 16:
            raise _malformed(f"set member address length {alen}")
        end = pos + 1 + alen
        prefixlen = b[end]
        if prefixlen > 8 * alen:
            raise _malformed(f"set member prefix length {prefixlen}")
        out.append((b[pos + 1 : end], prefixlen))
        pos = end + 1
    return tuple(out), pos


def _apply_sets(
    b: bytes, entry: HostEntry, table: tuple[TableEntry, ...], commands: tuple[Command, ...]
) -> tuple[HostEntry, tuple[TableEntry, ...], tuple[Command, ...]]:
    extras, pos = _decode_extras(b, 0)
    if extras and entry.preferred is None:
        raise _malformed("set members without a preferred address")
    seen = bool(extras)
    entry = dataclasses.replace(entry, extras=extras)
    rows = []
    for t in table:
        extras, pos = _decode_extras(b, pos)
        seen = seen or bool(extras)
        rows.append(dataclasses.replace(t, extras=extras) if extras else t)
    cmds = []
    for c in commands:
        extras, pos = _decode_extras(b, pos)
        seen = seen or bool(extras)
        cmds.append(dataclasses.replace(c, extras=extras) if extras else c)
    if pos != len(b):
        raise _malformed("trailing bytes in the sets section")
    if not seen:
        raise _malformed("an empty sets section")
    return entry, tuple(rows), tuple(cmds)


def decode_sections(body: bytes) -> Message | Hello:
    """Parse a whole version-2 body. Raises only DecodeError."""
    if type(body) is not bytes:
        body = bytes(body)
    n = len(body)
    pos = 0
    last = 0
    found: dict[int, bytes] = {}
    unknown: list[tuple[int, bytes]] = []
    while pos < n:
        if n - pos < _HEAD.size:
            raise DecodeError("truncated", "section header")
        kind, size = _HEAD.unpack_from(body, pos)
        pos += _HEAD.size
        if n - pos < size:
            raise DecodeError("truncated", f"section {kind:#04x} of {size} bytes")
        number = kind & 0x7F
        if number <= last:
            raise _malformed(f"section {kind:#04x} out of order")
        last = number
        payload = body[pos : pos + size]
        pos += size
        known = _KNOWN.get(number)
        if known is None:
            if kind & MUST:
                raise DecodeError("unsupported", f"must-understand section {kind:#04x}")
            unknown.append((kind, payload))
        elif known != kind:
            raise _malformed(f"section {number} with type {kind:#04x}, not {known:#04x}")
        else:
            found[kind] = payload
    try:
        return _assemble(found, tuple(unknown))
    except (IndexError, struct.error):
        raise DecodeError("truncated", "a section ends inside a field") from None


def _exact(pos: int, payload: bytes, name: str) -> None:
    if pos != len(payload):
        if pos > len(payload):  # pragma: no cover - every address is followed by a read
            raise IndexError
        raise _malformed(f"{len(payload) - pos} trailing bytes in the {name} section")


def _assemble(found: dict[int, bytes], unknown: tuple[tuple[int, bytes], ...]) -> Message | Hello:
    if FEATURES not in found:
        raise _malformed("no features section")
    versions, features = decode_features(found[FEATURES])
    if ENTRY not in found:
        if not found.keys() <= {FEATURES, PAUSED}:
            raise _malformed("a hello with sections of an info")
        relayed = _decode_paused(found[PAUSED]) if PAUSED in found else ()
        return Hello(versions=versions, features=features, unknown=unknown, paused=relayed)
    for kind, name in ((PEERS, "peers"), (TABLE, "table"), (COMMANDS, "commands")):
        if kind not in found:
            raise _malformed(f"no {name} section")
    payload = found[ENTRY]
    entry, pos = decode_entry(payload, 0)
    _exact(pos, payload, "entry")
    payload = found[PEERS]
    peers, pos = decode_peers(payload, 0)
    _exact(pos, payload, "peers")
    payload = found[TABLE]
    table, pos = decode_table(payload, 0)
    _exact(pos, payload, "table")
    payload = found[COMMANDS]
    commands, pos = decode_commands(payload, 0)
    _exact(pos, payload, "commands")
    if SETS in found:
        entry, table, commands = _apply_sets(found[SETS], entry, table, commands)
    pause_ms = 0
    if PAUSE in found:
        payload = found[PAUSE]
        if len(payload) != 4:
            raise _malformed(f"pause section of {len(payload)} bytes")
        (pause_ms,) = _U32.unpack(payload)
        if not pause_ms:
            raise _malformed("a pause of 0 ms")
    paused: tuple[PausedPeer, ...] = ()
    if PAUSED in found:
        paused = _decode_paused(found[PAUSED])
    guard = _decode_guard(found[GUARD]) if GUARD in found else None
    entry = dataclasses.replace(entry, versions=versions, features=features, pause_ms=pause_ms)
    return Message(
        entry=entry,
        peers=peers,
        table=table,
        commands=commands,
        paused=paused,
        unknown=unknown,
        guard=guard,
    )


def _addr_at(b: bytes, pos: int) -> tuple[Addr, int]:
    alen = b[pos]
    if alen != 4 and alen != 16:
        raise _malformed(f"address length {alen} in the guard section")
    end = pos + 1 + alen
    if end > len(b):
        raise IndexError
    return b[pos + 1 : end], end


def _decode_guard(b: bytes) -> GuardInfo:
    stamp, flags, token, count = _GUARD_HEAD.unpack_from(b, 0)
    if flags & ~(_G_VOTE | _G_QUORATE):
        raise _malformed(f"unknown guard flags {flags:#04x}")
    pos = _GUARD_HEAD.size
    vote = None
    if flags & _G_VOTE:
        vote, pos = _addr_at(b, pos)
    echoes = []
    for _ in range(count):
        host, pos = _addr_at(b, pos)
        (echo,) = _U32.unpack_from(b, pos)
        echoes.append((host, echo))
        pos += 4
    _exact(pos, b, "guard")
    return GuardInfo(stamp, vote, bool(flags & _G_QUORATE), token, tuple(echoes))


def _decode_paused(b: bytes) -> tuple[PausedPeer, ...]:
    (count,) = _U16.unpack_from(b, 0)
    if not count:
        raise _malformed("an empty paused section")
    pos = 2
    out = []
    for _ in range(count):
        remaining, age, epoch = _U32X3.unpack_from(b, pos)
        if not remaining:
            raise _malformed("a paused peer with 0 ms left")
        entry, pos = decode_entry(b, pos + 12)
        out.append(PausedPeer(entry, remaining, age, epoch))
    _exact(pos, b, "paused")
    return tuple(out)
