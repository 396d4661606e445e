"""Wire version 2 (src/rais/core/sections.py, docs/protocol.md "Version 2"):
typed, length-prefixed sections; skipping unknown ones; must-understand;
hellos; and what version 1 leaves out."""

from __future__ import annotations

import dataclasses

import pytest
from test_wire import (
    A4,
    A6,
    B4,
    KEY,
    RAW_MESSAGE,
    TAG,
    dec,
    frame,
    ip4,
    make_entry,
    make_message,
    raw_body,
)

from rais.core import wire
from rais.core.messages import (
    NOT_ORPHANED,
    Command,
    Hello,
    Message,
    Op,
    PausedPeer,
    PeerAge,
    TableEntry,
)
from rais.core.sections import encode_paused


def sec(kind: int, payload: bytes) -> bytes:
    return bytes((kind,)) + len(payload).to_bytes(4, "big") + payload


# The version-1 parts of raw_body(), cut where the sections of version 2 cut them.
ENTRY_BYTES = raw_body(peers=b"", table=b"", commands=b"")
PEERS_BYTES = b"\x00\x01\x10" + A6 + b"\x01\x2c\x01"
TABLE_BYTES = b"\x00\x01\x04" + B4 + b"\x20\x04" + A4 + b"\xff\xff\xff\xff"
COMMANDS_BYTES = b"\x00\x01\x02\x04" + A4 + b"\x10" + A6 + b"\x40"
FEATURES_BYTES = b"\x02\x01\x02" + b"\x02" + b"\x05pause" + b"\x04sets"


def v2_body(*extra: bytes, features: bytes = FEATURES_BYTES) -> bytes:
    """A version-2 body built by hand from docs/protocol.md; ``extra`` are
    sections inserted at their place by number (the caller orders them)."""
    parts = {
        1: sec(0x01, features),
        2: sec(0x82, ENTRY_BYTES),
        3: sec(0x03, PEERS_BYTES),
        4: sec(0x84, TABLE_BYTES),
        5: sec(0x85, COMMANDS_BYTES),
    }
    for s in extra:
        parts[s[0] & 0x7F] = s
    return b"".join(parts[n] for n in sorted(parts))


V2_MESSAGE = dataclasses.replace(
    RAW_MESSAGE,
    entry=dataclasses.replace(RAW_MESSAGE.entry, versions=(1, 2), features=("pause", "sets")),
)


def body2(body: bytes) -> object:
    return wire.decode_any(body, 2)


def reason2(body: bytes) -> str:
    with pytest.raises(wire.DecodeError) as info:
        wire.decode_any(body, 2)
    return info.value.reason


def test_hand_built_v2_body_matches_spec() -> None:
    assert body2(v2_body()) == V2_MESSAGE
    assert wire.encode_any(V2_MESSAGE, 2) == v2_body()
    d = dec(frame(v2_body(), version=2))
    assert d.version == 2 and d.message == V2_MESSAGE and d.hello is None


def test_sets_and_pause_sections() -> None:
    c6 = A6[:-1] + b"\x07"
    sets = (
        b"\x02\x10"
        + A6
        + b"\x40"
        + b"\x04"
        + A4
        + b"\x20"  # entry: two members
        + b"\x01\x10"
        + c6
        + b"\x80"  # the one table row: one member
        + b"\x00"  # the one command: none
    )
    body = v2_body(sec(0x06, sets), sec(0x07, (1500).to_bytes(4, "big")))
    msg = body2(body)
    want_entry = dataclasses.replace(V2_MESSAGE.entry, extras=((A6, 64), (A4, 32)), pause_ms=1500)
    want = dataclasses.replace(
        V2_MESSAGE,
        entry=want_entry,
        table=(dataclasses.replace(V2_MESSAGE.table[0], extras=((c6, 128),)),),
    )
    assert msg == want
    assert wire.encode_any(want, 2) == body


@pytest.mark.parametrize(
    "sets",
    [
        b"\x00\x00\x00",  # every list empty: the section must be left out
        b"\x01\x04" + A4 + b"\x21" + b"\x00\x00",  # prefix length 33 on IPv4
        b"\x01\x05" + A4 + b"\x20" + b"\x00\x00",  # address length 5
        b"\x01\x04" + A4 + b"\x20" + b"\x00",  # one list short... then truncated
        b"\x00\x00\x00\x00",  # one list too many
    ],
)
def test_bad_sets_section(sets: bytes) -> None:
    assert reason2(v2_body(sec(0x06, sets))) in ("malformed", "truncated")


def test_paused_section() -> None:
    # one paused peer: 2500 ms left, last heard 400 ms ago, epoch 7, its entry
    paused = (
        b"\x00\x01"
        + (2500).to_bytes(4, "big")
        + (400).to_bytes(4, "big")
        + (7).to_bytes(4, "big")
        + ENTRY_BYTES
    )
    body = v2_body(sec(0x08, paused))
    msg = body2(body)
    want = dataclasses.replace(
        V2_MESSAGE, paused=(PausedPeer(RAW_MESSAGE.entry, remaining_ms=2500, age_ms=400, epoch=7),)
    )
    assert msg == want
    assert wire.encode_any(want, 2) == body
    assert reason2(v2_body(sec(0x08, b"\x00\x00"))) == "malformed"  # empty: left out
    zero = b"\x00\x01" + bytes(4) + (400).to_bytes(4, "big") + bytes(4) + ENTRY_BYTES
    assert reason2(v2_body(sec(0x08, zero))) == "malformed"
    assert reason2(v2_body(sec(0x08, paused + b"\x00"))) == "malformed"


def test_a_hello_relays_paused_hosts() -> None:
    peer = PausedPeer(RAW_MESSAGE.entry, remaining_ms=900, age_ms=50, epoch=3)
    hello = Hello(versions=(1, 2), features=("pause", "sets"), paused=(peer,))
    body = wire.encode_any(hello, 2)
    assert body == sec(0x01, FEATURES_BYTES) + sec(0x08, encode_paused((peer,)))
    assert body2(body) == hello


def test_pause_of_zero_or_wrong_size_is_malformed() -> None:
    assert reason2(v2_body(sec(0x07, b"\x00\x00\x00\x00"))) == "malformed"
    assert reason2(v2_body(sec(0x07, b"\x00\x01"))) == "malformed"


def test_unknown_section_is_skipped_and_kept() -> None:
    body = v2_body(sec(0x2A, b"future stuff"))
    msg = body2(body)
    assert msg == dataclasses.replace(V2_MESSAGE, unknown=((0x2A, b"future stuff"),))
    assert isinstance(msg, Message)
    assert wire.encode_any(msg, 2) == body


def test_unknown_must_understand_section_is_unsupported() -> None:
    assert reason2(v2_body(sec(0xAA, b"future stuff"))) == "unsupported"
    with pytest.raises(wire.DecodeError) as info:
        dec(frame(v2_body(sec(0xAA, b"")), version=2))
    assert info.value.reason == "unsupported"


def test_known_section_with_the_wrong_must_bit_is_malformed() -> None:
    body = v2_body().replace(sec(0x03, PEERS_BYTES), sec(0x83, PEERS_BYTES))
    assert reason2(body) == "malformed"


def test_sections_out_of_order_or_twice_are_malformed() -> None:
    f, e, p = sec(0x01, FEATURES_BYTES), sec(0x82, ENTRY_BYTES), sec(0x03, PEERS_BYTES)
    rest = sec(0x84, TABLE_BYTES) + sec(0x85, COMMANDS_BYTES)
    assert reason2(e + f + p + rest) == "malformed"
    assert reason2(f + e + p + p + rest) == "malformed"


@pytest.mark.parametrize("missing", [0x82, 0x03, 0x84, 0x85])
def test_an_info_lacking_a_section_is_malformed(missing: int) -> None:
    parts = [
        sec(0x01, FEATURES_BYTES),
        sec(0x82, ENTRY_BYTES),
        sec(0x03, PEERS_BYTES),
        sec(0x84, TABLE_BYTES),
        sec(0x85, COMMANDS_BYTES),
    ]
    body = b"".join(p for p in parts if p[0] != missing)
    assert reason2(body) == "malformed"


def test_no_features_section_is_malformed() -> None:
    assert reason2(v2_body()[len(sec(0x01, FEATURES_BYTES)) :]) == "malformed"


@pytest.mark.parametrize(
    "features",
    [
        b"\x01\x01\x00",  # version 2 not listed
        b"\x02\x02\x01\x00",  # versions not ascending
        b"\x00\x00",  # no versions
        b"\x01\x02\x02\x04sets\x05pause",  # names not sorted
        b"\x01\x02\x01\x04Sets",  # upper case
        b"\x01\x02\x01\x00",  # empty name
        b"\x01\x02\x00\x00",  # trailing byte
    ],
)
def test_bad_features(features: bytes) -> None:
    assert reason2(v2_body(features=features)) in ("malformed", "truncated")


def test_a_section_that_is_longer_than_its_payload_is_malformed() -> None:
    body = v2_body().replace(sec(0x84, TABLE_BYTES), sec(0x84, TABLE_BYTES + b"\x00"))
    assert reason2(body) == "malformed"


def test_truncated_at_every_cut() -> None:
    body = v2_body(sec(0x07, (9).to_bytes(4, "big")))
    hello_end = len(sec(0x01, FEATURES_BYTES))
    for cut in range(len(body)):
        if cut == hello_end:  # the features section alone is a hello
            assert isinstance(body2(body[:cut]), Hello)
            continue
        if cut == len(v2_body()):  # without the (optional) pause section
            assert body2(body[:cut]) == V2_MESSAGE
            continue
        assert reason2(body[:cut]) in ("truncated", "malformed"), cut


def test_hello_round_trip() -> None:
    hello = Hello(versions=(1, 2), features=("pause", "sets"))
    body = sec(0x01, FEATURES_BYTES)
    assert wire.encode_any(hello, 2) == body
    assert body2(body) == hello
    data = wire.encode_hello_datagram(hello, group_tag=TAG, sender=A4, epoch=3, seq=7, key=KEY)
    d = dec(data)
    assert d.hello == hello and d.message is None and d.version == 2 and d.seq == 7
    assert data == frame(body, sender=A4, seq=7, version=2)
    # a hello with a section of an info is no hello
    assert reason2(body + sec(0x07, b"\x00\x00\x00\x01")) == "malformed"


def test_version_1_leaves_out_what_it_cannot_carry() -> None:
    rich = dataclasses.replace(
        V2_MESSAGE,
        entry=dataclasses.replace(V2_MESSAGE.entry, extras=((A6, 64),), pause_ms=9),
        table=(dataclasses.replace(V2_MESSAGE.table[0], extras=((A6, 64),)),),
    )
    (d,), _ = wire.encode(rich, group_tag=TAG, sender=A4, epoch=3, seq=100, key=KEY, version=1)
    assert dec(d).message == RAW_MESSAGE


def test_v2_needs_the_sender_to_speak_v2() -> None:
    with pytest.raises(ValueError):
        wire.encode(RAW_MESSAGE, group_tag=TAG, sender=A4, epoch=3, seq=1, key=KEY, version=2)
    with pytest.raises(ValueError):
        wire.encode(V2_MESSAGE, group_tag=TAG, sender=A4, epoch=3, seq=1, key=KEY, version=3)


def test_v2_splits_and_fills_peers_like_v1() -> None:
    entry = dataclasses.replace(
        make_entry(ip4(1), preferred=ip4(9), prefixlen=24), versions=(1, 2), features=("sets",)
    )
    table = tuple(
        TableEntry(ip4(100 + i), 32, ip4(i), NOT_ORPHANED, extras=((ip4(200 + i), 32),))
        for i in range(80)
    )
    peers = tuple(PeerAge(ip4(300 + i), i, True) for i in range(40))
    cmds = (Command(Op.ACQUIRE, ip4(2), ip4(100), 32, extras=((ip4(200), 32),)),)
    msg = make_message(entry, peers, table, cmds)
    out, n_peers = wire.encode(
        msg, group_tag=TAG, sender=ip4(1), epoch=3, seq=50, key=KEY, max_size=700, version=2
    )
    assert len(out) > 1 and 0 < n_peers <= 40
    chunks = [dec(d) for d in out]
    assert all(c.version == 2 and c.message is None for c in chunks)
    body = b"".join(c.chunk for c in chunks)
    got = wire.decode_any(body, 2)
    assert got == dataclasses.replace(msg, peers=peers[:n_peers])
    # no datagram was added for peers: without peers the count is the same
    no_peers, _ = wire.encode(
        dataclasses.replace(msg, peers=()),
        group_tag=TAG,
        sender=ip4(1),
        epoch=3,
        seq=50,
        key=KEY,
        max_size=700,
        version=2,
    )
    assert len(no_peers) == len(out)
