"""Utilization: the one rule for turning a host's (load, capacity) into a number.

Every reader of a load uses these two functions: the leader's placement
(core/control.py), the DNS thread (dns/zone.py), ``rais status`` and the
dashboard (status.py), the metrics (metrics.py) and the combining of several
load objects (probes/loads.py). So a host is never shed by DNS as full while
the leader places orphans on it as idle.

The rule (``load`` and ``capacity`` are the unsigned 32-bit values of the info
message, figure 2C; ``scale`` is the group's ``load_scale``)::

    capacity > 0:             load * scale // capacity   (integer division)
    capacity == 0, load == 0: 0      no load object at all: idle
    capacity == 0, load > 0:  scale  a load against no capacity: full

Loads above the capacity are *not* clamped to ``scale``: 1500/1000 is 1500, so
an overloaded host still ranks above one that is merely full, and water marks
above the scale keep their meaning. A load against capacity 0 counts as
exactly full (``scale``), the same as a load equal to its capacity.

A leaf module: it imports nothing of rais, so the sans-I/O core and the outer
modules can all import it without cycles.
"""

from __future__ import annotations

from fractions import Fraction


def _check(load: int, capacity: int) -> None:
    if load < 0 or capacity < 0:
        raise ValueError(f"load and capacity must be >= 0, got {load}/{capacity}")


def share(load: int, capacity: int) -> Fraction:
    """The exact load / capacity under the rule above (0/0 is 0, x/0 is 1);
    ``utilization`` is this times ``scale``, rounded down."""
    _check(load, capacity)
    if capacity == 0:
        return Fraction(1 if load else 0)
    return Fraction(load, capacity)


def utilization(load: int, capacity: int, scale: int) -> int:
    """The host's utilization on the ``0..scale`` scale (above ``scale`` when
    the load exceeds the capacity); see the module doc for the rule."""
    _check(load, capacity)
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    if capacity == 0:
        return scale if load else 0
    return load * scale // capacity
