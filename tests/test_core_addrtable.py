"""The address table's merge says whether it changed anything: a leader's
table heard again with every row served is no news (the core then does no
work for it), a new row, a new address set or an orphan's countdown is."""

from __future__ import annotations

from rais.core.addr import pack
from rais.core.addrtable import AddressTable
from rais.core.messages import NOT_ORPHANED, TableEntry

A, B, C, D = (pack(f"198.51.100.{i}") for i in range(1, 5))
H1, H2 = pack("192.0.2.1"), pack("192.0.2.2")


def served(address: bytes, host: bytes, **kw: object) -> TableEntry:
    return TableEntry(address, 24, host, NOT_ORPHANED, **kw)  # type: ignore[arg-type]


def test_a_table_heard_again_changes_nothing() -> None:
    t = AddressTable(60.0)
    table = (served(A, H1), served(B, H2))
    assert t.merge(1.0, table) is True  # rows learnt
    assert t.merge(1.1, table) is False
    assert t.merge(1.2, table, leader=False) is False
    assert t.next_deadline() is None


def test_new_rows_and_orphan_countdowns_are_news() -> None:
    t = AddressTable(60.0)
    t.merge(1.0, (served(A, H1),))
    assert t.merge(1.1, (served(A, H1), served(B, H2))) is True
    assert t.merge(1.2, (served(C, H2),), leader=False) is True  # unknown to this host
    assert t.merge(1.3, (served(C, H2),), leader=False) is False
    # a row first heard as an orphan: the leader's countdown moves it on
    assert t.merge(1.4, (TableEntry(D, 24, H2, 5000),)) is True
    deadline = t.next_deadline()
    assert deadline == 6.4
    assert t.merge(1.5, (TableEntry(D, 24, H2, 4800),)) is True
    assert t.next_deadline() == 6.3
    extras = ((C, 24),)
    assert t.merge(1.6, (TableEntry(D, 24, H2, 4700, extras),)) is True  # its set grew
    # a row this host sees served keeps its own view: the countdown is no news
    assert t.merge(1.7, (TableEntry(A, 24, H1, 4600),)) is False
