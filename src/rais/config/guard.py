"""The guard keys of a ``[[group]]`` (issue 13; docs/configuration.md, *Guard*):
``guard``, ``voters``, ``lease`` and ``on_arbiter_loss``, read together because
they are checked against each other, against the group's timing and peers and
against the file's ``[etcd]`` table. The rules on the numbers are the core's
(rais.core.config: ``MIN_LEASE``, ``check_guard``); here they are said with the
key that breaks them."""

from __future__ import annotations

from typing import Any

from rais.base.ip import IP
from rais.base.section import Invalid, Section, family
from rais.config.etcd import EtcdConfig
from rais.core.config import LOSS_MODES, MIN_LEASE, MODES

DEFAULT_LEASE = 2.0


def read_guard(
    g: Section,
    *,
    me: IP,
    peers: tuple[IP, ...],
    timeout: float,
    etcd: EtcdConfig | None,
) -> dict[str, Any]:
    """The guard fields of ``GroupConfig`` (by field name) from the group's
    table ``g``; ``me`` is the host id, ``peers`` the group's unicast peers,
    ``timeout`` the group's timeout in seconds, ``etcd`` the file's ``[etcd]``."""
    guard = g.choice("guard", MODES)
    if guard == "etcd" and etcd is None:
        raise g.fail("guard", 'guard "etcd" needs an [etcd] table with the cluster\'s endpoints')
    for name, needs in (("voters", "majority"), ("on_arbiter_loss", "etcd")):
        if g.has(name) and guard != needs:
            raise g.fail(name, f'counts only with guard = "{needs}" (the guard is "{guard}")')
    if g.has("lease") and guard == "none":
        raise g.fail("lease", 'counts only with a guard ("majority" or "etcd"), not "none"')

    voters = g.addresses("voters")  # unicast, no duplicates
    if guard == "majority" and not voters:
        raise g.fail("voters", 'guard "majority" needs voters: the host ids whose votes count')
    known = {me, *peers}
    for i, voter in enumerate(voters):
        where = f"{g.key('voters')}[{i}]"
        if voter.version != me.version:
            raise Invalid(
                where, f"{family(voter)} but the host id {me} (host.control[0]) is {family(me)}"
            )
        if peers and voter not in known:
            # With peers the config names every member; with multicast it cannot.
            raise Invalid(where, f"{voter} is neither this host's id nor one of the group's peers")

    lease = g.duration("lease", DEFAULT_LEASE)
    least = max(MIN_LEASE, 2 * timeout)
    if guard != "none" and lease.seconds < least:
        raise g.fail(
            "lease",
            f"must be at least {MIN_LEASE:g}s and 2 x timeout ({least:g}s), got {lease.shown}",
        )
    loss = g.choice("on_arbiter_loss", LOSS_MODES)
    return {"guard": guard, "voters": voters, "lease": lease.seconds, "on_arbiter_loss": loss}
