"""The parse memo of the inbox (rais.core.inbox.Memo): a body equal to its
sender's last one, PEERS aside, is not parsed again, and nothing the core
does changes for it."""

from __future__ import annotations

import random
from typing import Any

from clusterkit import Cluster, make_config

from rais.core import wire
from rais.core.core import Core
from rais.core.inbox import Memo, without_peers
from rais.core.messages import Hello, Message
from rais.core.sections import PEERS, decode_sections


class NoMemo(Memo):
    def __call__(self, sender: bytes, version: int, chunk: bytes) -> Message | Hello | None:
        return None

    def parsed(self, sender: bytes, body: Message | Hello) -> None:
        pass


def recorded_run() -> tuple[Cluster, list[tuple[float, bytes, int]]]:
    """A 4-host cluster with a crash, a restart and a quiesce; every datagram
    host 0 received, with its time."""
    c = Cluster([make_config(i + 1, spare=(i == 3)) for i in range(4)], seed=3)
    got: list[tuple[float, bytes, int]] = []
    core = c.nodes[0].core
    original = core.datagram_received

    def recording(now: float, data: bytes, via: int) -> bool:
        got.append((now, data, via))
        return original(now, data, via)

    core.datagram_received = recording  # type: ignore[method-assign]
    c.run_until(3.0)
    c.kill(1)
    c.run_until(5.0)
    c.restart(1)
    c.run_until(7.0)
    c.quiesce(2)
    c.run_until(9.0)
    c.unquiesce(2)
    c.run_until(11.0)
    return c, got


def replay(c: Cluster, got: list[tuple[float, bytes, int]], memo: bool) -> tuple[Any, ...]:
    core = Core(c.nodes[0].config, epoch=9, rng=random.Random(5), now=0.0)
    if not memo:
        core.inbox._memo = NoMemo()
    out = []
    timer = core.get_timer()
    for now, data, via in got:
        while timer is not None and timer <= now:
            core.handle_timer(timer)
            out += [(timer, e) for e in core.effects()]
            timer = core.get_timer()
        core.datagram_received(now, data, via)
        out += [(now, e) for e in core.effects()]
        timer = core.get_timer()
    return tuple(out), core.view(11.0)


def test_a_core_does_the_same_with_and_without_the_memo() -> None:
    c, got = recorded_run()
    assert len(got) > 200
    with_memo, view_memo = replay(c, got, memo=True)
    without, view_plain = replay(c, got, memo=False)
    assert with_memo == without
    assert view_memo == view_plain


def test_the_memo_reuses_only_bodies_equal_but_for_peers() -> None:
    c, got = recorded_run()
    memo = Memo()
    parsed = reused = 0
    group_tag = wire.group_tag(c.nodes[0].config.group)
    keys = c.nodes[0].config.keys
    for _, data, _ in got:
        before = memo._bodies.copy()
        d = wire.decode(data, group_tag=group_tag, keys=keys, reuse=memo)
        assert d.message is not None or d.hello is not None
        known = before.get(d.sender)
        fresh = wire.decode(data, group_tag=group_tag, keys=keys)
        if known is not None and (d.message or d.hello) is known[1]:
            reused += 1
            got_body, want = d.message, fresh.message
            assert got_body is not None and want is not None
            # equal in all but the peers
            assert (got_body.entry, got_body.table, got_body.commands, got_body.guard) == (
                want.entry,
                want.table,
                want.commands,
                want.guard,
            )
        else:
            parsed += 1
            assert d.message == fresh.message and d.hello == fresh.hello
    assert reused > parsed > 10  # steady state is mostly reused


def test_without_peers_cuts_exactly_the_peers_section() -> None:
    _, got = recorded_run()
    data = got[-1][1]
    chunk = data[9 + 4 + 12 : -32]
    cut = without_peers(chunk)
    assert len(cut) < len(chunk)
    whole = decode_sections(chunk)
    assert isinstance(whole, Message)
    # what is left parses (PEERS is required, so put an empty one back)
    from rais.core.sections import peers_section

    peers_at = chunk.index(bytes([PEERS]))  # the first section byte of that number
    rebuilt = cut[:peers_at] + peers_section([]) + cut[peers_at:]
    again = decode_sections(rebuilt)
    assert isinstance(again, Message) and again.entry == whole.entry and again.peers == ()
    assert without_peers(b"\x01\x00") == b"\x01\x00"  # truncated: left as it is
