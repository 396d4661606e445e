from __future__ import annotations

import ipaddress
from pathlib import Path

from rais.runtime.state import HeldFile, next_epoch


def test_epochs_always_grow(tmp_path: Path) -> None:
    a = next_epoch(str(tmp_path))
    b = next_epoch(str(tmp_path))
    assert b == a + 1
    (tmp_path / "epoch").write_text("garbage")
    assert next_epoch(str(tmp_path)) >= a  # falls back to the clock


def test_held_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "held-www"
    held = HeldFile(path)
    v4 = ipaddress.ip_address("198.51.100.1")
    v6 = ipaddress.ip_address("2001:db8::1")
    held.add(v4, 24)
    held.add(v6, 64)
    assert HeldFile(path).load() == {(v4, 24), (v6, 64)}
    held.discard(v4, 24)
    assert HeldFile(path).load() == {(v6, 64)}
    assert HeldFile(tmp_path / "missing").load() == set()
