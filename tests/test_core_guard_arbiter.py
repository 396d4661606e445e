"""Guard "etcd" in the core (rais.core.guard.Guard.arbiter), fed the way the
arbiter loop (rais.runtime.arbiter) and the simulator's driver feed it: when
etcd stops answering, the driver reports ``reachable=False`` with
``held=True`` until the key's ``valid_until``, then ``held=False``. With
``on_arbiter_loss = "hold"`` the leader then holds on (every member heard at
the loss still names it), the events say when the key was lost and regained,
and ``holding`` shows only once the key is gone."""

from __future__ import annotations

from rais.core.addr import pack
from rais.core.config import CoreConfig
from rais.core.effects import Event, EventKind
from rais.core.guard import Guard, stamp_of
from rais.core.messages import GuardInfo
from rais.core.outbox import Outbox

ME = pack("192.0.2.1")
OTHER = pack("192.0.2.2")


def make(loss: str = "hold") -> tuple[Guard, Outbox]:
    c = CoreConfig(
        group="www", control=(ME,), keys=(b"k",), guard="etcd", lease=2.0, on_arbiter_loss=loss
    )
    out = Outbox("www", ME)
    return Guard(c, out, 0.0), out


def hear(g: Guard, now: float) -> None:
    """OTHER names this host, echoing its stamp of 10 ms ago."""
    echo = ((ME, stamp_of(now - 0.01)),)
    g.take(now, OTHER, GuardInfo(stamp_of(now), ME, False, 0, echo), False, ())


def lead(g: Guard, now: float) -> None:
    g.settle(now, True, True, ME, [], False)


def kinds(out: Outbox) -> list[EventKind]:
    return [e.kind for e in out.items if isinstance(e, Event)]


def run(g: Guard, start: float, end: float) -> None:
    t = start
    while t < end:
        hear(g, t)
        lead(g, t)
        t = round(t + 0.1, 3)


def test_holds_on_after_the_key_lapsed_while_etcd_was_unreachable() -> None:
    g, out = make()
    run(g, 0.4, 0.5)
    g.arbiter(0.5, True, True, 5, 2.5, [OTHER])
    assert g.quorate(0.5) and kinds(out) == [EventKind.ARBITER_REGAINED]
    run(g, 0.5, 1.0)
    g.arbiter(1.0, False, True, 5, 2.5, [OTHER])  # etcd gone; the key may still be ours
    assert g.quorate(1.0) and not g.view(1.0, []).holding and g.view(1.0, []).key_held
    run(g, 1.0, 2.5)
    g.arbiter(2.5, False, False, 0, 0.0, [OTHER])  # its lease surely ran out
    assert kinds(out) == [EventKind.ARBITER_REGAINED, EventKind.ARBITER_LOST]
    run(g, 2.5, 4.0)
    assert g.quorate(4.0), "holding on: every member heard at the loss still names it"
    v = g.view(4.0, [])
    assert v.holding and not v.key_held and v.arbiter == "unreachable"
    # OTHER goes silent: holding on ends
    t = 4.0
    while t < 4.6:
        lead(g, t)
        t = round(t + 0.1, 3)
    assert not g.quorate(4.6) and not g.view(4.6, []).holding
    assert kinds(out)[-1] == EventKind.QUORUM_LOST
    # etcd back, the key won again
    hear(g, 5.0)
    g.arbiter(5.0, True, True, 9, 7.0, [OTHER])
    assert g.quorate(5.0) and kinds(out)[-1] == EventKind.ARBITER_REGAINED


def test_the_key_lost_when_the_driver_says_so_after_its_time() -> None:
    g, out = make()
    run(g, 0.4, 0.5)
    g.arbiter(0.5, True, True, 5, 2.5, [OTHER])
    g.arbiter(1.0, False, True, 5, 2.5, [OTHER])
    run(g, 1.0, 2.7)
    g.arbiter(2.7, False, False, 0, 0.0, [OTHER])  # told a little after until
    assert kinds(out) == [EventKind.ARBITER_REGAINED, EventKind.ARBITER_LOST]


def test_release_does_not_hold_on() -> None:
    g, _ = make("release")
    run(g, 0.4, 0.5)
    g.arbiter(0.5, True, True, 5, 2.5, [OTHER])
    g.arbiter(1.0, False, True, 5, 2.5, [OTHER])
    assert g.quorate(2.4)
    g.arbiter(2.5, False, False, 0, 0.0, [OTHER])
    run(g, 2.5, 3.0)
    assert not g.quorate(3.0) and not g.view(3.0, []).holding
