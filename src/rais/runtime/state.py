"""What the agent keeps on disk across restarts: the boot epoch and, per group,
the service addresses it holds (so a restart after a crash removes leftovers)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import time
from pathlib import Path

from rais.base.ip import IP, ip_key


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def next_epoch(state_dir: str) -> int:
    """A boot epoch above every earlier one: the stored counter plus one, and at
    least the wall-clock seconds (so a lost state directory is still safe)."""
    path = Path(state_dir) / "epoch"
    stored = 0
    with contextlib.suppress(OSError, ValueError):
        stored = int(path.read_text().strip())
    epoch = max(stored + 1, int(time.time())) & 0xFFFFFFFF
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    _write(path, f"{epoch}\n")
    return epoch


class HeldFile:
    """The addresses one group holds, written through on every change. One line
    per address, ``ADDR/PREFIX``; an address of a set that is not its key is
    written ``ADDR/PREFIX of KEY`` (a release before address sets skips such
    lines: their kernel lifetime removes them)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._held: set[tuple[IP, int]] = set()
        self._of: dict[tuple[IP, int], IP] = {}
        self._loaded_of: dict[tuple[IP, int], IP] = {}
        self.changes = 0
        """Counts every change of what this run holds (a cheap "anything new?")."""

    def load(self) -> set[tuple[IP, int]]:
        if self.path is None:
            self._loaded_of = dict(self._of)
            return set(self._held)
        out: set[tuple[IP, int]] = set()
        self._loaded_of = {}
        with contextlib.suppress(OSError):
            for line in self.path.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    text, _, key = line.strip().partition(" of ")
                    iface = ipaddress.ip_interface(text)
                    item = (iface.ip, iface.network.prefixlen)
                    if key:
                        self._loaded_of[item] = ipaddress.ip_address(key)
                    out.add(item)
        return out

    def loaded_keys(self) -> dict[tuple[IP, int], IP]:
        """Of the last ``load``: the key of each address that is another address
        of a set."""
        return dict(self._loaded_of)

    def keys(self) -> dict[tuple[IP, int], IP]:
        """Of what this run holds: the key of each address that is another
        address of a set."""
        return dict(self._of)

    def save(self, held: set[tuple[IP, int]]) -> None:
        self._held = set(held)
        self.changes += 1
        self._of = {h: k for h, k in self._of.items() if h in self._held}
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lines = sorted(
                f"{ip}/{p}" + (f" of {self._of[(ip, p)]}" if (ip, p) in self._of else "")
                for ip, p in self._held
            )
            _write(self.path, "".join(line + "\n" for line in lines))

    def current(self) -> list[tuple[IP, int]]:
        """What this run holds now (added and not yet removed)."""
        return sorted(self._held, key=lambda h: ip_key(h[0]))

    def add(self, ip: IP, prefixlen: int, key: IP | None = None) -> None:
        """``key``: the key of the set ``ip`` is another address of."""
        if (ip, prefixlen) not in self._held or self._of.get((ip, prefixlen)) != key:
            if key is not None:
                self._of[(ip, prefixlen)] = key
            else:
                self._of.pop((ip, prefixlen), None)
            self.save(self._held | {(ip, prefixlen)})

    def discard(self, ip: IP, prefixlen: int) -> None:
        if (ip, prefixlen) in self._held:
            self.save(self._held - {(ip, prefixlen)})
