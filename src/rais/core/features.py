"""What this release of the protocol supports, and the rule for using a feature
in a group of mixed releases (docs/protocol.md, "Versions and features").

A host announces the wire versions it speaks and the features it supports. A
feature that changes what other hosts must understand is used only while every
live member of the group announces it: the *common* feature set. A host that
speaks only wire version 1 announces nothing and so has no features.
"""

from __future__ import annotations

from collections.abc import Iterable

from rais.core.messages import HostEntry

WIRE_VERSIONS: tuple[int, ...] = (1, 2)
"""The wire versions this release speaks."""

PAUSE = "pause"
"""A host may announce that it restarts in place (``rais pause``); the others keep
its addresses where they are for the window it names."""

SETS = "sets"
"""A preferred address may be a set of addresses that moves as one unit."""

FEATURES: tuple[str, ...] = (PAUSE, SETS)
"""The features this release supports (sorted)."""


def common(own: HostEntry, live: Iterable[HostEntry]) -> frozenset[str]:
    """The features every one of ``own`` and the ``live`` members announce."""
    out = frozenset(own.features)
    for entry in live:
        if out:
            out = out.intersection(entry.features)
    return out


def common_version(own: HostEntry, live: Iterable[HostEntry]) -> int:
    """The highest wire version every one of ``own`` and the ``live`` members speak
    (1 if they share no other)."""
    shared = set(own.versions)
    for entry in live:
        shared.intersection_update(entry.versions)
    return max(shared, default=1)
