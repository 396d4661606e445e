"""Tests of the wire format (src/rais/core/wire.py, docs/protocol.md ("Wire format"))."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rais.core import body as body_module
from rais.core import wire
from rais.core.addr import Addr, pack
from rais.core.messages import (
    NOT_ORPHANED,
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

KEY = b"k" * 32
OLD_KEY = b"old key, still accepted during rotation"
TAG = wire.group_tag("test-group")
REASONS = {"oversized", "truncated", "malformed", "version", "group", "auth"}


def ip4(i: int) -> Addr:
    return bytes((10, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF))


def ip6(i: int) -> Addr:
    return pack("2001:db8::")[:12] + i.to_bytes(4, "big")


H1 = ip4(1)


def make_entry(
    host: Addr = H1,
    *,
    served: tuple[tuple[Addr, AddrState], ...] = (),
    control: tuple[Addr, ...] | None = None,
    preferred: Addr | None = None,
    prefixlen: int = 0,
) -> HostEntry:
    return HostEntry(
        id=host,
        control=(host,) if control is None else control,
        ok=True,
        quiesced=False,
        observer=False,
        leaving=False,
        settled=True,
        load=7,
        capacity=100,
        preferred=preferred,
        prefixlen=prefixlen,
        served=served,
    )


def make_message(
    entry: HostEntry,
    peers: tuple[PeerAge, ...] = (),
    table: tuple[TableEntry, ...] = (),
    commands: tuple[Command, ...] = (),
) -> Message:
    return Message(entry=entry, peers=peers, table=table, commands=commands)


def enc(
    msg: Message,
    *,
    key: bytes = KEY,
    seq: int = 100,
    max_size: int = wire.MAX_DATAGRAM,
    sender: Addr | None = None,
) -> tuple[list[bytes], int]:
    return wire.encode(
        msg,
        group_tag=TAG,
        sender=msg.entry.id if sender is None else sender,
        epoch=3,
        seq=seq,
        key=key,
        max_size=max_size,
    )


def dec(data: bytes, keys: tuple[bytes, ...] = (KEY,)) -> Datagram:
    return wire.decode(data, group_tag=TAG, keys=keys)


def reason(data: bytes, keys: tuple[bytes, ...] = (KEY,), tag: int = TAG) -> str:
    with pytest.raises(wire.DecodeError) as info:
        wire.decode(data, group_tag=tag, keys=keys)
    assert info.value.reason in REASONS
    return info.value.reason


def body_reason(body: bytes) -> str:
    with pytest.raises(wire.DecodeError) as info:
        wire.decode_body(body)
    return info.value.reason


def reassemble(datagrams: list[bytes], keys: tuple[bytes, ...] = (KEY,)) -> Message:
    """Decode every part and rebuild the message, checking the split invariants."""
    decoded = [dec(d, keys) for d in datagrams]
    first = decoded[0]
    for i, d in enumerate(decoded):
        assert d.part == i
        assert d.parts == len(datagrams)
        assert d.seq == first.seq + i
        assert (d.sender, d.epoch, d.group_tag) == (first.sender, first.epoch, TAG)
        assert d.size == len(datagrams[i])
    if len(decoded) == 1:
        assert first.message is not None
        assert first.chunk == b""
        return first.message
    assert all(d.message is None and d.chunk for d in decoded)
    return wire.decode_body(b"".join(d.chunk for d in decoded))


def overhead(sender: Addr) -> int:
    """Bytes of a datagram that are not body (docs/protocol.md, "Wire format")."""
    return 2 + 1 + 1 + 4 + 1 + len(sender) + 4 + 4 + 1 + 1 + 2 + 32


# ---------------------------------------------------------------- hand-built frames


def frame(
    body: bytes,
    *,
    key: bytes = KEY,
    sender: Addr = H1,
    epoch: int = 3,
    seq: int = 100,
    part: int = 0,
    parts: int = 1,
    magic: bytes = b"RS",
    version: int = 1,
    tag: int = TAG,
    sender_len: int | None = None,
    chunk_len: int | None = None,
) -> bytes:
    """A datagram built from the layout in docs/protocol.md, independent of wire.py."""
    hint = hashlib.sha256(key).digest()[0]
    signed = (
        magic
        + bytes((version, hint))
        + tag.to_bytes(4, "big")
        + bytes((len(sender) if sender_len is None else sender_len,))
        + sender
        + epoch.to_bytes(4, "big")
        + seq.to_bytes(4, "big")
        + bytes((part, parts))
        + (len(body) if chunk_len is None else chunk_len).to_bytes(2, "big")
        + body
    )
    return signed + hmac.new(key, signed, hashlib.sha256).digest()


A4 = bytes((192, 0, 2, 1))
A6 = pack("2001:db8::1")
B4 = bytes((192, 0, 2, 2))


def raw_body(
    *,
    flags: bytes = b"\x11",
    host: bytes = b"\x04" + A4,
    load_capacity: bytes = (5).to_bytes(4, "big") + (9).to_bytes(4, "big"),
    control: bytes = b"\x01\x04" + A4,
    preferred: bytes = b"\x04" + B4 + b"\x18",
    served: bytes = b"\x00\x01\x04" + B4 + b"\x02",
    requests: bytes = (
        b"\x02"
        + (b"\x01\x04" + B4 + b"\x04" + A4 + (1234).to_bytes(8, "big"))
        + (b"\x02\x10" + A6 + b"\x00" + (2**64 - 1).to_bytes(8, "big"))
    ),
    peers: bytes = b"\x00\x01\x10" + A6 + b"\x01\x2c\x01",
    table: bytes = b"\x00\x01\x04" + B4 + b"\x20\x04" + A4 + b"\xff\xff\xff\xff",
    commands: bytes = b"\x00\x01\x02\x04" + A4 + b"\x10" + A6 + b"\x40",
    trailing: bytes = b"",
) -> bytes:
    """A message body built by hand from the layout in docs/protocol.md ("Wire format")."""
    return (
        flags
        + host
        + load_capacity
        + control
        + preferred
        + served
        + requests
        + peers
        + table
        + commands
        + trailing
    )


RAW_MESSAGE = Message(
    entry=HostEntry(
        id=A4,
        control=(A4,),
        ok=True,
        quiesced=False,
        observer=False,
        leaving=False,
        settled=True,
        load=5,
        capacity=9,
        preferred=B4,
        prefixlen=24,
        served=((B4, AddrState.ONLINE),),
        requests=(
            Request(ReqOp.MOVE, B4, A4, 1234),
            Request(ReqOp.FAILBACK, A6, None, 2**64 - 1),
        ),
    ),
    peers=(PeerAge(id=A6, age_ms=300, live=True),),
    table=(TableEntry(address=B4, prefixlen=32, preferred=A4, orphan_ms=NOT_ORPHANED),),
    commands=(Command(op=Op.RELEASE, target=A4, address=A6, prefixlen=64),),
)


def test_hand_built_body_matches_spec() -> None:
    assert wire.decode_body(raw_body()) == RAW_MESSAGE
    assert wire.encode_body(RAW_MESSAGE) == raw_body()


def test_hand_built_datagram_matches_spec() -> None:
    datagrams, peers = wire.encode(RAW_MESSAGE, group_tag=TAG, sender=A4, epoch=3, seq=100, key=KEY)
    assert peers == 1
    assert datagrams == [frame(raw_body(), sender=A4)]
    d = dec(datagrams[0])
    assert d == Datagram(
        group_tag=TAG,
        sender=A4,
        epoch=3,
        seq=100,
        part=0,
        parts=1,
        message=RAW_MESSAGE,
        chunk=b"",
        size=len(datagrams[0]),
    )


def test_group_tag() -> None:
    assert wire.group_tag("abc") == int.from_bytes(hashlib.sha256(b"abc").digest()[:4], "big")
    assert wire.group_tag("abc") != wire.group_tag("abd")
    assert 0 <= wire.group_tag("") < 2**32


def test_key_hint_byte() -> None:
    (d,), _ = enc(make_message(make_entry()))
    assert d[3] == hashlib.sha256(KEY).digest()[0]
    (d,), _ = enc(make_message(make_entry()), key=OLD_KEY)
    assert d[3] == hashlib.sha256(OLD_KEY).digest()[0]


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("family", [ip4, ip6])
@pytest.mark.parametrize("n_served", [0, 1, 256])
def test_round_trip_served(family: Callable[[int], Addr], n_served: int) -> None:
    host = family(1)
    served = tuple((family(1000 + i), AddrState(1 + i % 3)) for i in range(n_served))
    msg = make_message(
        make_entry(host, served=served, preferred=family(1000), prefixlen=24),
        table=tuple(
            TableEntry(address=family(1000 + i), prefixlen=24, preferred=host, orphan_ms=i)
            for i in range(n_served)
        ),
    )
    datagrams, peers = enc(msg)
    assert peers == 0
    assert all(len(d) <= wire.MAX_DATAGRAM for d in datagrams)
    assert reassemble(datagrams) == msg


def test_round_trip_ipv6_sender_ipv4_addresses() -> None:
    msg = make_message(
        make_entry(ip6(1), control=(ip6(1), ip4(1)), served=((ip4(7), AddrState.ACQUIRING),)),
        peers=(PeerAge(ip4(2), 0, False), PeerAge(ip6(3), 65535, True)),
        commands=(Command(op=Op.ACQUIRE, target=ip4(2), address=ip6(9), prefixlen=128),),
    )
    datagrams, peers = enc(msg)
    assert peers == 2
    assert len(datagrams) == 1
    assert reassemble(datagrams) == msg


def test_all_flags_round_trip() -> None:
    for bits in range(32):
        entry = dataclasses.replace(
            make_entry(),
            ok=bool(bits & 1),
            quiesced=bool(bits & 2),
            observer=bool(bits & 4),
            leaving=bool(bits & 8),
            settled=bool(bits & 16),
        )
        body = wire.encode_body(make_message(entry))
        assert body[0] == bits
        assert wire.decode_body(body).entry == entry


def test_256_ipv6_served_splits() -> None:
    host = ip6(1)
    served = tuple((ip6(0x10000 + i), AddrState.ONLINE) for i in range(256))
    peers = tuple(PeerAge(ip6(100 + i), i, True) for i in range(5))
    msg = make_message(make_entry(host, served=served), peers=peers)
    datagrams, included = enc(msg, seq=0xFFFF_FF00)
    assert len(datagrams) > 1
    assert all(len(d) <= wire.MAX_DATAGRAM for d in datagrams)
    decoded = [dec(d) for d in datagrams]
    assert [d.seq for d in decoded] == [0xFFFF_FF00 + i for i in range(len(datagrams))]
    # every part but the last is full
    assert all(len(d) == wire.MAX_DATAGRAM for d in datagrams[:-1])
    assert reassemble(datagrams) == dataclasses.replace(msg, peers=peers[:included])
    # The last datagram had room for the 5 peers (256 * 18 bytes of served is not a
    # multiple of the chunk size), so all of them are in.
    assert included == 5


def test_large_table_and_commands_round_trip() -> None:
    table = tuple(
        TableEntry(
            address=ip6(i) if i % 2 else ip4(i),
            prefixlen=64 if i % 2 else 24,
            preferred=ip4(i % 7),
            orphan_ms=NOT_ORPHANED if i % 3 else i * 1000,
        )
        for i in range(1000)
    )
    commands = tuple(
        Command(op=Op(1 + i % 2), target=ip4(i % 7), address=ip6(i), prefixlen=i % 129)
        for i in range(300)
    )
    msg = make_message(make_entry(), table=table, commands=commands)
    datagrams, _ = enc(msg)
    assert 1 < len(datagrams) <= 255
    assert reassemble(datagrams) == msg


def test_small_max_size() -> None:
    msg = make_message(make_entry(served=((ip4(5), AddrState.RELEASING),)))
    smallest = overhead(msg.entry.id) + 1
    datagrams, _ = enc(msg, max_size=smallest)
    assert len(datagrams) == len(wire.encode_body(msg))  # one body byte each
    assert all(len(d) == smallest for d in datagrams)
    assert reassemble(datagrams) == msg


# ---------------------------------------------------------------- peers, best effort


def test_peers_best_effort() -> None:
    peers = tuple(PeerAge(ip4(1000 + i), i, i % 2 == 0) for i in range(256))
    msg = make_message(make_entry(), peers=peers)
    datagrams, included = enc(msg)
    assert len(datagrams) == 1
    assert 0 < included < 256
    assert len(datagrams[0]) <= wire.MAX_DATAGRAM
    # no room for one more (an IPv4 peer is 8 bytes)
    assert len(datagrams[0]) + 8 > wire.MAX_DATAGRAM
    got = reassemble(datagrams)
    assert got == dataclasses.replace(msg, peers=peers[:included])
    # stable: re-encoding the decoded message gives the same bytes
    again, included_again = enc(got)
    assert (again, included_again) == (datagrams, included)


def test_peers_never_add_a_datagram() -> None:
    host = ip6(1)
    served = tuple((ip6(0x10000 + i), AddrState.ONLINE) for i in range(256))
    msg_no_peers = make_message(make_entry(host, served=served))
    n = len(enc(msg_no_peers)[0])
    cap = wire.MAX_DATAGRAM - overhead(host)
    spare = n * cap - len(wire.encode_body(msg_no_peers))
    peers = tuple(PeerAge(ip6(500 + i), 1, True) for i in range(200))
    datagrams, included = enc(dataclasses.replace(msg_no_peers, peers=peers))
    assert len(datagrams) == n
    assert included == spare // 20  # an IPv6 peer is 1 + 16 + 2 + 1 bytes
    assert included < 200


def test_peers_are_taken_in_order_and_stop_at_first_misfit() -> None:
    # Room for a few IPv4 peers; an IPv6 peer that does not fit stops the list
    # even if smaller ones after it would fit (in order, from the first).
    base = make_message(make_entry())
    cap = 200 - overhead(base.entry.id)
    spare = cap - len(wire.encode_body(base))
    assert spare >= 20
    n4 = (spare - 12) // 8  # leave 12..19 bytes: room for IPv4 (8), not IPv6 (20)
    peers = tuple(PeerAge(ip4(i), 0, True) for i in range(n4))
    peers += (PeerAge(ip6(1), 0, True), PeerAge(ip4(99), 0, True))
    datagrams, included = enc(dataclasses.replace(base, peers=peers), max_size=200)
    assert len(datagrams) == 1
    assert included == n4


def test_peer_age_is_capped() -> None:
    msg = make_message(make_entry(), peers=(PeerAge(ip4(2), 100_000, True),))
    got = reassemble(enc(msg)[0])
    assert got.peers == (PeerAge(ip4(2), 0xFFFF, True),)


def test_preferred_none_writes_prefixlen_zero() -> None:
    msg = make_message(make_entry(preferred=None, prefixlen=24))
    got = reassemble(enc(msg)[0])
    assert got.entry.preferred is None
    assert got.entry.prefixlen == 0


# ---------------------------------------------------------------- encoder errors


@pytest.mark.parametrize(
    "msg",
    [
        make_message(make_entry(b"\x01\x02\x03")),
        make_message(make_entry(control=())),
        make_message(make_entry(control=tuple(ip4(i) for i in range(9)))),
        make_message(make_entry(preferred=ip4(1), prefixlen=33)),
        make_message(make_entry(preferred=ip6(1), prefixlen=129)),
        make_message(make_entry(served=((ip4(1), 7),))),  # type: ignore[arg-type]
        make_message(dataclasses.replace(make_entry(), load=-1)),
        make_message(dataclasses.replace(make_entry(), capacity=2**32)),
        make_message(make_entry(), peers=(PeerAge(ip4(2), -1, True),)),
        make_message(make_entry(), peers=(PeerAge(b"", 0, True),)),
        make_message(make_entry(), table=(TableEntry(ip4(2), 24, ip4(1), 2**32),)),
        make_message(make_entry(), table=(TableEntry(ip4(2), 40, ip4(1), 0),)),
        make_message(make_entry(), commands=(Command(3, ip4(1), ip4(2), 32),)),  # type: ignore[arg-type]
        make_message(make_entry(), commands=(Command(Op.ACQUIRE, ip4(1), ip4(2), -1),)),
    ],
)
def test_encode_rejects_unrepresentable(msg: Message) -> None:
    with pytest.raises(ValueError):
        enc(msg, sender=ip4(1))
    with pytest.raises(ValueError):
        wire.encode_body(msg)


def test_encode_rejects_bad_arguments() -> None:
    msg = make_message(make_entry())
    with pytest.raises(ValueError):
        enc(msg, sender=b"\x00" * 5)
    with pytest.raises(ValueError):
        enc(msg, max_size=wire.MAX_DATAGRAM + 1)
    with pytest.raises(ValueError):
        enc(msg, max_size=overhead(msg.entry.id))
    with pytest.raises(ValueError):
        enc(msg, key=b"")
    with pytest.raises(ValueError):
        enc(msg, seq=-1)
    with pytest.raises(ValueError):
        enc(msg, seq=2**32)
    with pytest.raises(ValueError):
        wire.encode(msg, group_tag=2**32, sender=ip4(1), epoch=0, seq=0, key=KEY)
    with pytest.raises(ValueError):
        wire.encode(msg, group_tag=TAG, sender=ip4(1), epoch=-1, seq=0, key=KEY)
    # a 3-part message whose last sequence number would wrap
    big = make_message(make_entry(served=tuple((ip6(i), AddrState.ONLINE) for i in range(200))))
    assert len(enc(big, seq=2**32 - 3)[0]) == 3
    with pytest.raises(ValueError):
        enc(big, seq=2**32 - 2)


def test_encode_rejects_more_than_255_parts() -> None:
    table = tuple(TableEntry(ip6(i), 64, ip6(i), 0) for i in range(10_000))
    with pytest.raises(ValueError, match="255"):
        enc(make_message(make_entry(), table=table))


# ---------------------------------------------------------------- rejections


def valid_datagrams() -> list[bytes]:
    small = make_message(
        make_entry(served=((ip4(9), AddrState.ONLINE),)),
        peers=(PeerAge(ip4(2), 5, True), PeerAge(ip6(3), 6, False)),
        table=(TableEntry(ip4(9), 24, ip4(1), NOT_ORPHANED),),
        commands=(Command(Op.ACQUIRE, ip4(2), ip4(9), 24),),
    )
    big = make_message(
        make_entry(ip6(1), served=tuple((ip6(i), AddrState.ONLINE) for i in range(80)))
    )
    return enc(small)[0] + enc(big)[0]


def test_valid_datagrams_decode() -> None:
    datagrams = valid_datagrams()
    assert len(datagrams) >= 3
    for d in datagrams:
        dec(d)


def test_oversized() -> None:
    assert reason(b"RS" + b"\x00" * 1399) == "oversized"
    assert reason(b"\x00" * 65535) == "oversized"


def test_truncated_at_every_cut() -> None:
    for d in valid_datagrams():
        for cut in range(len(d)):
            assert reason(d[:cut]) == "truncated", cut


def test_body_truncated_at_every_cut() -> None:
    bodies = [raw_body(), wire.encode_body(make_message(make_entry()))]
    for body in bodies:
        for cut in range(len(body)):
            assert body_reason(body[:cut]) == "truncated", cut


def test_extended_datagram_is_malformed() -> None:
    for d in valid_datagrams():
        expected = "malformed" if len(d) < wire.MAX_DATAGRAM else "oversized"
        assert reason(d + b"\x00") == expected


def test_flipped_bit_anywhere() -> None:
    for d in valid_datagrams():
        for i in range(len(d)):
            for bit in range(8):
                bad = bytearray(d)
                bad[i] ^= 1 << bit
                reason(bytes(bad))  # raises DecodeError, whatever the reason


def test_wrong_version() -> None:
    assert reason(frame(raw_body(), version=3)) == "version"
    assert reason(frame(raw_body(), version=0)) == "version"
    # a version-1 body under a version-2 header is not a valid version-2 body
    assert reason(frame(raw_body(), version=2)) in ("malformed", "truncated")
    # a host that speaks only version 1 drops version 2, as the old release does
    with pytest.raises(wire.DecodeError) as info:
        wire.decode(frame(raw_body(), version=2), group_tag=TAG, keys=(KEY,), versions=(1,))
    assert info.value.reason == "version"


def test_wrong_group() -> None:
    assert reason(frame(raw_body(), tag=TAG ^ 1)) == "group"
    (d,), _ = enc(make_message(make_entry()))
    assert reason(d, tag=wire.group_tag("another group")) == "group"


def test_wrong_key() -> None:
    (d,), _ = enc(make_message(make_entry()))
    assert reason(d, keys=(OLD_KEY,)) == "auth"
    assert reason(d, keys=()) == "auth"
    assert reason(d, keys=(b"",)) == "auth"
    assert reason(frame(raw_body(), key=OLD_KEY)) == "auth"


@pytest.mark.parametrize(
    "datagram",
    [
        pytest.param(frame(raw_body(), magic=b"RT"), id="magic"),
        pytest.param(frame(raw_body(), sender_len=5, sender=b"\x00" * 5), id="sender-len-5"),
        pytest.param(frame(raw_body(), sender_len=0, sender=b""), id="sender-len-0"),
        pytest.param(frame(raw_body(), parts=0), id="parts-0"),
        pytest.param(frame(raw_body(), part=1, parts=1), id="part-eq-parts"),
        pytest.param(frame(raw_body(), part=7, parts=3), id="part-gt-parts"),
        pytest.param(frame(raw_body(), chunk_len=len(raw_body()) - 1), id="chunk-len-short"),
    ],
)
def test_malformed_header(datagram: bytes) -> None:
    assert reason(datagram) == "malformed"


def test_chunk_length_too_long_is_truncated() -> None:
    assert reason(frame(raw_body(), chunk_len=len(raw_body()) + 1)) == "truncated"
    assert reason(frame(raw_body(), chunk_len=0xFFFF)) == "truncated"


A4_5 = b"\x05" + A4 + b"\x00"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(raw_body(flags=b"\x20"), id="flag-0x20"),
        pytest.param(raw_body(flags=b"\xff"), id="flag-0xff"),
        pytest.param(raw_body(host=b"\x05" + A4 + b"\x00"), id="id-len-5"),
        pytest.param(raw_body(host=b"\x00"), id="id-len-0"),
        pytest.param(raw_body(control=b"\x00"), id="control-count-0"),
        pytest.param(raw_body(control=b"\x09" + 9 * (b"\x04" + A4)), id="control-count-9"),
        pytest.param(raw_body(control=b"\x01\x06" + A4 + b"\x00\x00"), id="control-len-6"),
        pytest.param(raw_body(preferred=b"\x05" + A4 + b"\x00\x00"), id="preferred-len-5"),
        pytest.param(raw_body(preferred=b"\x04" + A4 + b"\x21"), id="prefixlen-33-v4"),
        pytest.param(raw_body(preferred=b"\x10" + A6 + b"\x81"), id="prefixlen-129-v6"),
        pytest.param(raw_body(preferred=b"\x00\x01"), id="prefixlen-without-preferred"),
        pytest.param(raw_body(served=b"\x00\x01\x03" + A4[:3] + b"\x02"), id="served-len-3"),
        pytest.param(raw_body(served=b"\x00\x01\x04" + B4 + b"\x00"), id="state-0"),
        pytest.param(raw_body(served=b"\x00\x01\x04" + B4 + b"\x04"), id="state-4"),
        pytest.param(raw_body(peers=b"\x00\x01\x11" + A6 + b"\x00\x00\x00\x01"), id="peer-len"),
        pytest.param(raw_body(peers=b"\x00\x01\x04" + A4 + b"\x00\x00\x02"), id="live-2"),
        pytest.param(
            raw_body(table=b"\x00\x01\x08" + A4 + A4 + b"\x20\x04" + A4 + b"\x00" * 4),
            id="table-len",
        ),
        pytest.param(
            raw_body(table=b"\x00\x01\x04" + B4 + b"\x21\x04" + A4 + b"\x00" * 4),
            id="table-prefixlen",
        ),
        pytest.param(
            raw_body(table=b"\x00\x01\x04" + B4 + b"\x20\x00" + b"\x00" * 4),
            id="table-preferred-len-0",
        ),
        pytest.param(
            raw_body(commands=b"\x00\x01\x00\x04" + A4 + b"\x04" + B4 + b"\x20"), id="op-0"
        ),
        pytest.param(
            raw_body(commands=b"\x00\x01\x03\x04" + A4 + b"\x04" + B4 + b"\x20"), id="op-3"
        ),
        pytest.param(
            raw_body(commands=b"\x00\x01\x01\x00\x04" + B4 + b"\x20"), id="command-target-len"
        ),
        pytest.param(
            raw_body(commands=b"\x00\x01\x01\x04" + A4 + b"\x02" + B4[:2] + b"\x20"),
            id="command-address-len",
        ),
        pytest.param(
            raw_body(commands=b"\x00\x01\x01\x04" + A4 + b"\x04" + B4 + b"\x21"),
            id="command-prefixlen",
        ),
        pytest.param(raw_body(trailing=b"\x00"), id="trailing-byte"),
        pytest.param(raw_body(requests=b"\x01\x03\x04" + B4 + b"\x00" + bytes(8)), id="req-op"),
        pytest.param(
            raw_body(requests=b"\x01\x01\x04" + B4 + b"\x00" + bytes(8)), id="move-no-target"
        ),
        pytest.param(
            raw_body(requests=b"\x01\x02\x04" + B4 + b"\x04" + A4 + bytes(8)),
            id="failback-with-target",
        ),
        pytest.param(
            raw_body(requests=b"\x01\x01\x04" + B4 + b"\x05" + A4 + b"\x00" + bytes(8)),
            id="move-target-len",
        ),
        pytest.param(raw_body(requests=b"\x01\x01\x05" + B4 + b"\x00" + bytes(8)), id="req-len"),
    ],
)
def test_malformed_body(body: bytes) -> None:
    assert body_reason(body) == "malformed"
    # behind a valid HMAC the datagram decoder reports the same reason
    assert reason(frame(body)) == "malformed"


def test_counts_past_the_end_are_truncated() -> None:
    served = b"\x00\x02\x04" + B4 + b"\x02"
    body = raw_body(served=served, requests=b"", peers=b"", table=b"", commands=b"")
    assert body_reason(body) == "truncated"
    request = b"\x01\x02\x10" + A6 + b"\x00" + bytes(8)
    body = raw_body(requests=request, peers=b"", table=b"", commands=b"")
    assert body_reason(body[: len(body) - 4]) == "truncated"
    assert body_reason(raw_body(commands=b"\xff\xff")) == "truncated"
    assert body_reason(raw_body(peers=b"\x00\x05", table=b"", commands=b"")) == "truncated"


def test_body_never_raises_other_exceptions() -> None:
    for body in (b"", b"\x00", b"\xff" * 10, b"\x00\x04" + b"\x00" * 100):
        body_reason(body)


def test_decode_accepts_buffers() -> None:
    (d,), _ = enc(RAW_MESSAGE)
    for buf in (bytearray(d), memoryview(d)):
        got = wire.decode(buf, group_tag=TAG, keys=(KEY,))  # type: ignore[arg-type]
        assert got.message == RAW_MESSAGE
        assert type(got.sender) is bytes
    assert wire.decode_body(bytearray(raw_body())) == RAW_MESSAGE  # type: ignore[arg-type]


# ---------------------------------------------------------------- key rotation


@pytest.mark.parametrize("signer", [OLD_KEY, KEY])
def test_key_rotation(signer: bytes) -> None:
    msg = make_message(make_entry(), peers=(PeerAge(ip4(2), 1, True),))
    for datagrams in (enc(msg, key=signer)[0], valid_and_big(signer)):
        for keys in ((OLD_KEY, KEY), (KEY, OLD_KEY), (signer,)):
            reassemble(datagrams, keys)
        assert reason(datagrams[0], keys=(b"neither",)) == "auth"


def valid_and_big(key: bytes) -> list[bytes]:
    msg = make_message(make_entry(served=tuple((ip6(i), AddrState.ONLINE) for i in range(100))))
    return enc(msg, key=key)[0]


def test_key_hint_collision_still_tries_other_keys() -> None:
    # Find a third key with the same hint byte as KEY: the decoder tries it first
    # (matching hint), fails, and must still go on to the real key.
    hint = hashlib.sha256(KEY).digest()[0]
    twin = next(
        k
        for i in range(100_000)
        if hashlib.sha256(k := b"twin%d" % i).digest()[0] == hint and k != KEY
    )
    (d,), _ = enc(RAW_MESSAGE)
    assert dec(d, keys=(twin, KEY)).message == RAW_MESSAGE
    assert dec(d, keys=(KEY, twin)).message == RAW_MESSAGE


# ---------------------------------------------------------------- hygiene


@pytest.mark.parametrize("module", [wire, body_module])
def test_wire_imports_only_allowed_modules(module: ModuleType) -> None:
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text())
    allowed = {
        "__future__",
        "struct",
        "hmac",
        "hashlib",
        "functools",  # a memo of each key's padded hashes (lru_cache)
        "dataclasses",
        "typing",
        "collections.abc",
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name in allowed or name.startswith("rais.core."), name


# ---------------------------------------------------------------- properties

addrs = st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16))


@st.composite
def addr_prefix(draw: st.DrawFn) -> tuple[Addr, int]:
    a = draw(addrs)
    return a, draw(st.integers(0, 8 * len(a)))


@st.composite
def host_entries(draw: st.DrawFn) -> HostEntry:
    preferred = draw(st.none() | addr_prefix())
    return HostEntry(
        id=draw(addrs),
        control=tuple(draw(st.lists(addrs, min_size=1, max_size=8))),
        ok=draw(st.booleans()),
        quiesced=draw(st.booleans()),
        observer=draw(st.booleans()),
        leaving=draw(st.booleans()),
        settled=draw(st.booleans()),
        load=draw(st.integers(0, 2**32 - 1)),
        capacity=draw(st.integers(0, 2**32 - 1)),
        preferred=None if preferred is None else preferred[0],
        prefixlen=0 if preferred is None else preferred[1],
        served=tuple(draw(st.lists(st.tuples(addrs, st.sampled_from(AddrState)), max_size=30))),
    )


peer_ages = st.builds(PeerAge, id=addrs, age_ms=st.integers(0, 0xFFFF), live=st.booleans())


@st.composite
def table_entries(draw: st.DrawFn) -> TableEntry:
    address, prefixlen = draw(addr_prefix())
    return TableEntry(
        address=address,
        prefixlen=prefixlen,
        preferred=draw(addrs),
        orphan_ms=draw(st.integers(0, 2**32 - 1) | st.just(NOT_ORPHANED)),
    )


@st.composite
def commands(draw: st.DrawFn) -> Command:
    address, prefixlen = draw(addr_prefix())
    return Command(
        op=draw(st.sampled_from(Op)), target=draw(addrs), address=address, prefixlen=prefixlen
    )


messages = st.builds(
    Message,
    entry=host_entries(),
    peers=st.lists(peer_ages, max_size=40).map(tuple),
    table=st.lists(table_entries(), max_size=30).map(tuple),
    commands=st.lists(commands(), max_size=10).map(tuple),
)


@given(messages)
def test_body_round_trip(msg: Message) -> None:
    body = wire.encode_body(msg)
    assert wire.decode_body(body) == msg
    assert wire.encode_body(wire.decode_body(body)) == body


@settings(max_examples=200)
@given(
    msg=messages,
    sender=addrs,
    epoch=st.integers(0, 2**32 - 1),
    seq=st.integers(0, 2**32 - 256),
    max_size=st.integers(100, wire.MAX_DATAGRAM),
    key=st.binary(min_size=1, max_size=64),
)
def test_encode_decode_round_trip(
    msg: Message, sender: Addr, epoch: int, seq: int, max_size: int, key: bytes
) -> None:
    datagrams, included = wire.encode(
        msg, group_tag=TAG, sender=sender, epoch=epoch, seq=seq, key=key, max_size=max_size
    )
    assert 0 <= included <= len(msg.peers)
    assert all(len(d) <= max_size for d in datagrams)
    decoded = [wire.decode(d, group_tag=TAG, keys=(OLD_KEY, key)) for d in datagrams]
    assert [(d.seq, d.part, d.parts) for d in decoded] == [
        (seq + i, i, len(datagrams)) for i in range(len(datagrams))
    ]
    assert all(d.sender == sender and d.epoch == epoch for d in decoded)
    if len(decoded) == 1:
        got = decoded[0].message
    else:
        got = wire.decode_body(b"".join(d.chunk for d in decoded))
    expected = dataclasses.replace(msg, peers=msg.peers[:included])
    assert got == expected
    # no datagram added for peers, and no room left for the next peer
    cap = max_size - overhead(sender)
    without_peers = len(wire.encode_body(dataclasses.replace(msg, peers=())))
    assert len(datagrams) == max(1, -(-without_peers // cap))
    if included < len(msg.peers):
        with_next = dataclasses.replace(msg, peers=msg.peers[: included + 1])
        assert len(wire.encode_body(with_next)) > len(datagrams) * cap


@settings(max_examples=60, deadline=None)
@given(key=st.binary(min_size=1, max_size=200), seq=st.integers(0, 2**32 - 2))
def test_the_mac_is_hmac_sha256_for_keys_of_any_length(key: bytes, seq: int) -> None:
    """The signer keeps each key's padded hashes (shorter, equal to and longer
    than SHA-256's 64-byte block): the MAC is still the standard one, and a
    datagram signed with another key is refused."""
    (data,), _ = wire.encode(RAW_MESSAGE, group_tag=TAG, sender=A4, epoch=3, seq=seq, key=key)
    signed, mac = data[: -wire.MAC_SIZE], data[-wire.MAC_SIZE :]
    assert mac == hmac.digest(key, signed, "sha256")
    assert wire.decode(data, group_tag=TAG, keys=[key]).seq == seq
    with pytest.raises(wire.DecodeError):
        wire.decode(data, group_tag=TAG, keys=[key + b"x"])
