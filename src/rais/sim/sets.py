"""The checker's judgement of address sets (docs/protocol.md, "Address sets"):
a set moves as one unit, keyed by its first address, whose own fate the other
invariants judge.

* **S1**, after every action: no other address of a set is on a host that does
  not hold the set's key. So an address of a set is on two hosts only while its
  key is (a duplicate, judged by I3), and never left behind by a release.
* **S2**, when the group has settled (judged with I1): while every up host
  announces ``sets``, a set whose preferred host is up and whose key is held by
  exactly one host is held whole there (every address of the set the preferred
  host's configuration names, unless the holder is quiesced: it takes no new
  address); while some up host does not, no
  other address of any set is held anywhere (only what old hosts understand).
"""

from __future__ import annotations

from collections.abc import Callable

from rais.core.addr import Addr, fmt
from rais.core.features import SETS
from rais.core.hosts import eligible
from rais.sim.world import World


class SetJudge:
    __slots__ = ("violate", "world")

    def __init__(self, world: World, violate: Callable[[str, float, str], None]) -> None:
        self.world = world
        self.violate = violate

    def _keys(self) -> dict[Addr, Addr]:
        """Every other address of a configured set, with its key."""
        w = self.world
        return {
            a: key
            for i, extras in w.extras.items()
            if (key := w.hosts[i].preferred) is not None
            for a, _ in extras
        }

    def changed(self, now: float, host: int) -> None:
        """An action completed on ``host``: judge S1 there."""
        w = self.world
        for extra, key in self._keys().items():
            if host in w.extra_holders.get(extra, ()) and host not in w.holders.get(key, ()):
                self.violate(
                    "S1",
                    now,
                    f"host {host} holds {fmt(extra)} of the set of {fmt(key)} without the key",
                )

    def common(self) -> bool:
        """Whether every up host announces ``sets`` (the world's truth)."""
        return all(
            SETS in h.core.config.features for h in self.world.hosts if h.up and h.core is not None
        )

    def whole(self, index: int) -> tuple[Addr, ...]:
        """The other addresses of host ``index``'s set that its holder must have up
        now (none while ``sets`` is not common or the host is down)."""
        h = self.world.hosts[index]
        if h.core is None or not self.common():
            return ()
        return tuple(a for a, _ in h.core.config.extras)

    def settled(self) -> str | None:
        """S2 (see the module doc); None if it holds."""
        w = self.world
        if not self.common():
            for extra, hs in w.extra_holders.items():
                if hs:
                    return f"{fmt(extra)} held by {sorted(hs)} while a host does not announce sets"
            return None
        for h in w.hosts:
            if h.preferred is None or h.core is None:
                continue
            holders = w.holders.get(h.preferred, set())
            if len(holders) != 1:
                continue
            (holder,) = holders
            if not eligible(w.hosts[holder]):
                continue  # a quiesced holder takes no new address, extras included
            want = set(self.whole(h.index))
            have = {a for a, hs in w.extra_holders.items() if holder in hs and a in want}
            if have != want:
                missing = ", ".join(fmt(a) for a in sorted(want - have))
                return f"the set of {fmt(h.preferred)} on host {holder} lacks {missing}"
        return None
