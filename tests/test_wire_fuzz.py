"""Fuzz the wire decoder: it must return a Datagram or raise DecodeError, nothing else.

The inputs are a mix of random byte strings and mutations of valid datagrams.
Most mutated datagrams are re-signed with the right key after the mutation so
that the parser behind the HMAC check is exercised, not just the HMAC check.
Every accepted input is also checked for canonical encoding: the parsed body
re-encodes to exactly the bytes that were received.

The number of inputs is the ``--fuzz-count`` option (default 20000; the full
run uses ``--fuzz-count 1000000``). The generator is an explicitly seeded
``random.Random``, so a run is reproducible and a larger count extends a
smaller one.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from rais.core import wire
from rais.core.addr import Addr
from rais.core.messages import (
    NOT_ORPHANED,
    AddrState,
    Command,
    Hello,
    HostEntry,
    Message,
    Op,
    PausedPeer,
    PeerAge,
    TableEntry,
)

SEED = 0x5A1_F00D
KEY = b"fuzz key " * 4
OTHER_KEY = b"another key"
TAG = wire.group_tag("fuzz")
REASONS = {"oversized", "truncated", "malformed", "version", "group", "auth", "unsupported"}
FEATURE_NAMES = ("pause", "sets", "x", "a-b", "z9")
INTERESTING = (0, 1, 2, 3, 4, 5, 8, 15, 16, 17, 32, 33, 127, 128, 129, 254, 255)


# ---------------------------------------------------------------- valid corpus


def rand_addr(rng: random.Random) -> Addr:
    return rng.randbytes(4 if rng.random() < 0.6 else 16)


def rand_prefix(rng: random.Random, addr: Addr) -> int:
    return rng.randint(0, 8 * len(addr))


def rand_extras(rng: random.Random, p: float) -> tuple[tuple[Addr, int], ...]:
    if rng.random() >= p:
        return ()
    out = []
    for _ in range(rng.randint(1, 3)):
        addr = rand_addr(rng)
        out.append((addr, rand_prefix(rng, addr)))
    return tuple(out)


def rand_features(rng: random.Random) -> tuple[tuple[int, ...], tuple[str, ...]]:
    versions = tuple(sorted({2, *rng.sample(range(1, 9), rng.randint(0, 3))}))
    return versions, tuple(sorted(rng.sample(FEATURE_NAMES, rng.randint(0, 3))))


def rand_unknown(rng: random.Random) -> tuple[tuple[int, bytes], ...]:
    """Skippable sections of numbers this release does not know."""
    if rng.random() >= 0.2:
        return ()
    numbers = sorted(rng.sample(range(8, 128), rng.randint(1, 2)))
    return tuple((n, rng.randbytes(rng.randint(0, 12))) for n in numbers)


def rand_v2(rng: random.Random, msg: Message) -> Message:
    """``msg`` with what only version 2 carries."""
    versions, features = rand_features(rng)
    entry = replace(
        msg.entry,
        versions=versions,
        features=features,
        extras=rand_extras(rng, 0.3) if msg.entry.preferred is not None else (),
        pause_ms=rng.randint(1, 0xFFFFFFFF) if rng.random() < 0.2 else 0,
    )
    table = tuple(replace(t, extras=rand_extras(rng, 0.2)) for t in msg.table)
    commands = tuple(replace(c, extras=rand_extras(rng, 0.2)) for c in msg.commands)
    paused = tuple(
        PausedPeer(
            replace(rand_message(rng).entry, requests=()),
            rng.randint(1, 0xFFFFFFFF),
            rng.getrandbits(32),
            rng.getrandbits(32),
        )
        for _ in range(rng.randint(1, 2) if rng.random() < 0.15 else 0)
    )
    return replace(
        msg,
        entry=entry,
        table=table,
        commands=commands,
        paused=paused,
        unknown=rand_unknown(rng),
    )


def rand_message(rng: random.Random) -> Message:
    big = rng.random() < 0.15
    preferred = rand_addr(rng) if rng.random() < 0.7 else None
    entry = HostEntry(
        id=rand_addr(rng),
        control=tuple(rand_addr(rng) for _ in range(rng.randint(1, 8))),
        ok=rng.random() < 0.5,
        quiesced=rng.random() < 0.5,
        observer=rng.random() < 0.5,
        leaving=rng.random() < 0.5,
        settled=rng.random() < 0.5,
        load=rng.getrandbits(32),
        capacity=rng.getrandbits(32),
        preferred=preferred,
        prefixlen=0 if preferred is None else rand_prefix(rng, preferred),
        served=tuple(
            (rand_addr(rng), rng.choice(list(AddrState)))
            for _ in range(rng.randint(0, 256 if big else 4))
        ),
    )
    peers = tuple(
        PeerAge(rand_addr(rng), rng.randint(0, 0xFFFF), rng.random() < 0.5)
        for _ in range(rng.randint(0, 12))
    )
    table = []
    for _ in range(rng.randint(0, 40 if big else 4)):
        address = rand_addr(rng)
        orphan = NOT_ORPHANED if rng.random() < 0.5 else rng.getrandbits(32)
        table.append(TableEntry(address, rand_prefix(rng, address), rand_addr(rng), orphan))
    commands = []
    for _ in range(rng.randint(0, 3)):
        address = rand_addr(rng)
        commands.append(
            Command(rng.choice(list(Op)), rand_addr(rng), address, rand_prefix(rng, address))
        )
    return Message(entry=entry, peers=peers, table=tuple(table), commands=tuple(commands))


def corpus(rng: random.Random, n: int) -> tuple[list[bytes], list[tuple[int, bytes]]]:
    """Valid datagrams (single and multi-part, both versions, hellos) and valid
    full message bodies with their versions."""
    datagrams: list[bytes] = []
    bodies: list[tuple[int, bytes]] = []
    for _ in range(n):
        msg = rand_message(rng)
        version = 1 if rng.random() < 0.5 else 2
        if version == 2:
            msg = rand_v2(rng, msg)
        if rng.random() < 0.1:
            versions, features = rand_features(rng)
            hello = Hello(versions, features, rand_unknown(rng))
            datagrams.append(
                wire.encode_hello_datagram(
                    hello, group_tag=TAG, sender=msg.entry.id, epoch=1, seq=1, key=KEY
                )
            )
            bodies.append((2, wire.encode_any(hello, 2)))
        max_size = wire.MAX_DATAGRAM if rng.random() < 0.7 else rng.randint(120, wire.MAX_DATAGRAM)
        out, _ = wire.encode(
            msg,
            group_tag=TAG,
            sender=msg.entry.id,
            epoch=rng.getrandbits(32),
            seq=rng.getrandbits(31),
            key=KEY,
            max_size=max_size,
            version=version,
        )
        datagrams.extend(out)
        bodies.append((version, wire.encode_any(msg, version)))
    return datagrams, bodies


# ---------------------------------------------------------------- mutations


def flip_bits(rng: random.Random, b: bytearray) -> None:
    for _ in range(rng.randint(1, 4)):
        if b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)


def replace_bytes(rng: random.Random, b: bytearray) -> None:
    for _ in range(rng.randint(1, 4)):
        if b:
            i = rng.randrange(len(b))
            b[i] = rng.choice(INTERESTING) if rng.random() < 0.5 else rng.randrange(256)


def set_u16(rng: random.Random, b: bytearray) -> None:
    if len(b) >= 2:
        i = rng.randrange(len(b) - 1)
        b[i : i + 2] = rng.choice((0, 1, 2, 0xFF, 0x100, 0xFFFF, rng.randrange(65536))).to_bytes(
            2, "big"
        )


def truncate(rng: random.Random, b: bytearray) -> None:
    del b[rng.randint(0, len(b)) :]


def extend(rng: random.Random, b: bytearray) -> None:
    b.extend(rng.randbytes(rng.randint(1, 64)))


def insert(rng: random.Random, b: bytearray) -> None:
    i = rng.randint(0, len(b))
    b[i:i] = rng.randbytes(rng.randint(1, 17))


def delete(rng: random.Random, b: bytearray) -> None:
    if b:
        i = rng.randrange(len(b))
        del b[i : i + rng.randint(1, 17)]


def duplicate(rng: random.Random, b: bytearray) -> None:
    if b:
        i = rng.randrange(len(b))
        j = min(len(b), i + rng.randint(1, 40))
        k = rng.randint(0, len(b))
        b[k:k] = b[i:j]


MUTATORS: tuple[Callable[[random.Random, bytearray], None], ...] = (
    flip_bits,
    replace_bytes,
    set_u16,
    truncate,
    extend,
    insert,
    delete,
    duplicate,
)


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """One to three random mutations, or a splice of two inputs."""
    if rng.random() < 0.1:
        other = rng.choice(pool)
        return data[: rng.randint(0, len(data))] + other[rng.randint(0, len(other)) :]
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        rng.choice(MUTATORS)(rng, b)
    return bytes(b)


def split(datagram: bytes) -> tuple[bytes, bytes]:
    """A valid datagram's header (up to the chunk length field) and its chunk."""
    start = 9 + datagram[8] + 12
    return datagram[: start - 2], datagram[start:-32]


def sign(signed: bytes, key: bytes = KEY) -> bytes:
    return signed + hmac.new(key, signed, hashlib.sha256).digest()


def resign_body(rng: random.Random, datagram: bytes, pool: list[bytes]) -> bytes:
    """Mutate the chunk, fix up the chunk length (usually) and recompute the HMAC."""
    head, chunk = split(datagram)
    chunk = mutate(rng, chunk, pool)
    length = len(chunk) if rng.random() < 0.95 else rng.randrange(65536)
    return sign(head + length.to_bytes(2, "big") + chunk)


def resign_header(rng: random.Random, datagram: bytes, pool: list[bytes]) -> bytes:
    """Mutate the header fields (not the chunk) and recompute the HMAC."""
    head, chunk = split(datagram)
    b = bytearray(head)
    i = rng.randrange(len(b))
    if rng.random() < 0.5:
        b[i] = rng.choice(INTERESTING)
    else:
        b[i] ^= 1 << rng.randrange(8)
    return sign(bytes(b) + len(chunk).to_bytes(2, "big") + chunk)


# ---------------------------------------------------------------- checks


def check_body(body: bytes, version: int, outcomes: Counter[str], label: str) -> None:
    try:
        msg = wire.decode_any(body, version)
    except wire.DecodeError as exc:
        allowed = {"truncated", "malformed"} | ({"unsupported"} if version == 2 else set())
        assert exc.reason in allowed, (exc, body.hex())
        outcomes[f"{label}:v{version}:{exc.reason}"] += 1
        return
    except Exception as exc:
        raise AssertionError(f"decode_any({body.hex()}, {version}) raised {exc!r}") from exc
    outcomes[f"{label}:v{version}:ok"] += 1
    assert wire.encode_any(msg, version) == body, body.hex()


def check_datagram(data: bytes, outcomes: Counter[str], label: str) -> bool:
    try:
        d = wire.decode(data, group_tag=TAG, keys=(OTHER_KEY, KEY))
    except wire.DecodeError as exc:
        assert exc.reason in REASONS, (exc, data.hex())
        outcomes[f"{label}:{exc.reason}"] += 1
        return False
    except Exception as exc:
        raise AssertionError(f"decode({data.hex()}) raised {exc!r}") from exc
    outcomes[f"{label}:ok"] += 1
    assert d.size == len(data) <= wire.MAX_DATAGRAM
    assert 0 <= d.part < d.parts <= 255
    assert d.group_tag == TAG
    assert len(d.sender) in (4, 16)
    _, chunk = split(data)
    assert d.version == data[2] in (1, 2)
    if d.parts == 1:
        parsed = d.message or d.hello
        assert parsed is not None and (d.message is None) != (d.hello is None)
        assert d.chunk == b""
        # canonical: the parsed message re-encodes to the very bytes received
        assert wire.encode_any(parsed, d.version) == chunk, data.hex()
    else:
        assert d.message is None and d.hello is None
        assert d.chunk == chunk
        check_body(d.chunk, d.version, outcomes, "chunk")
    return True


def test_fuzz_decode(fuzz_count: int) -> None:
    rng = random.Random(SEED)
    datagrams, bodies = corpus(rng, 300)
    valid = set(datagrams)
    for d in datagrams:  # the corpus itself is valid
        wire.decode(d, group_tag=TAG, keys=(KEY,))
    outcomes: Counter[str] = Counter()
    for _ in range(fuzz_count):
        r = rng.random()
        if r < 0.15:
            label = "random"
            data = rng.randbytes(rng.randint(0, 1500))
            if rng.random() < 0.3:  # random bytes behind a plausible header
                data = datagrams[0][:9] + data
        elif r < 0.65:
            label = "resigned-body"
            data = resign_body(rng, rng.choice(datagrams), datagrams)
        elif r < 0.75:
            label = "resigned-header"
            data = resign_header(rng, rng.choice(datagrams), datagrams)
        else:
            label = "unsigned"
            data = mutate(rng, rng.choice(datagrams), datagrams)
        accepted = check_datagram(data, outcomes, label)
        if accepted and label == "unsigned":
            # without a fresh HMAC only a mutation that rebuilt a valid datagram passes
            assert data in valid, data.hex()
        if label == "resigned-body" and rng.random() < 0.2:
            version, body = rng.choice(bodies)
            pool = [b for v, b in bodies if v == version]
            check_body(mutate(rng, body, pool), version, outcomes, "body")

    # The re-signed inputs really reached the parser: few were stopped by the HMAC
    # check, and the parser both accepted and rejected some of them.
    resigned = sum(v for k, v in outcomes.items() if k.startswith("resigned-body:"))
    assert outcomes["resigned-body:auth"] == 0
    assert outcomes["resigned-body:ok"] > resigned * 0.01
    assert outcomes["resigned-body:malformed"] > resigned * 0.05
    assert outcomes["resigned-body:truncated"] > resigned * 0.05
    assert outcomes["resigned-header:ok"] > 0
    # both versions' bodies were parsed, accepted and rejected
    for version in (1, 2):
        assert outcomes[f"body:v{version}:ok"] + outcomes[f"chunk:v{version}:ok"] > 0
        assert outcomes[f"body:v{version}:malformed"] > 0
    print(sorted(outcomes.items()))
