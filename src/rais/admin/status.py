"""Status of a group (``rais.admin.status_view.GroupStatus``) from its core's read
model, and the readable table ``rais status`` prints from the status JSON
(``GET /v1/status``, ``rais.admin.status_view.status_json``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rais.admin.status_view import (
    AddressStatus,
    DnsStatus,
    GroupStatus,
    GuardStatus,
    HostStatus,
    LinkStatus,
    ServedStatus,
    SetStatus,
    TestStatus,
)
from rais.core.addr import fmt
from rais.core.utilization import utilization
from rais.core.view import CoreView, MemberView, SetView

Extras = tuple[tuple[bytes, int], ...]


def _shown(extras: Extras) -> tuple[str, ...]:
    return tuple(f"{fmt(a)}/{p}" for a, p in extras)


def _set(s: SetView) -> SetStatus:
    key = (f"{fmt(s.key)}/{s.prefixlen}",)
    return SetStatus(
        key=key[0],
        state=s.state.name.lower(),
        up=(key if s.state.name == "ONLINE" else ()) + _shown(s.up),
        adding=(key if s.state.name == "ACQUIRING" else ()) + _shown(s.adding),
        removing=(key if s.state.name == "RELEASING" else ()) + _shown(s.removing),
        waiting=_shown(s.waiting),
        why=s.why,
    )


def _host(m: MemberView, scale: int) -> HostStatus:
    entry = m.entry
    return HostStatus(
        id=fmt(entry.id),
        control=tuple(fmt(c) for c in entry.control),
        live=m.live,
        ok=entry.ok,
        quiesced=entry.quiesced,
        spare=entry.preferred is None and not entry.observer,
        observer=entry.observer,
        leaving=entry.leaving,
        load=entry.load,
        capacity=entry.capacity,
        utilization=utilization(entry.load, entry.capacity, scale),
        preferred=(
            f"{fmt(entry.preferred)}/{entry.prefixlen}" if entry.preferred is not None else None
        ),
        served=tuple(ServedStatus(fmt(a), s.name.lower()) for a, s in entry.served),
        last_heard_s=0.0 if m.this_host else round(m.age, 3),
        wire_versions=entry.versions,
        features=entry.features,
        paused_s=None if m.paused_s is None else round(m.paused_s, 3),
        preferred_set=(
            (f"{fmt(entry.preferred)}/{entry.prefixlen}", *_shown(entry.extras))
            if entry.preferred is not None and entry.extras
            else ()
        ),
    )


def group_status(
    view: CoreView,
    counters: Mapping[str, int],
    *,
    scale: int = 1000,
    tests: Sequence[TestStatus] = (),
    dns: DnsStatus | None = None,
    interface: str | None = None,
    track_link: bool = False,
) -> GroupStatus:
    """One group's status from the core's read model (``Core.view(now)``);
    ``tests``: this host's tests of the group; ``dns``: the group's DNS, if any;
    ``interface``: its service interface (None: no link status), whose link
    it tracks if ``track_link``."""
    hosts = sorted((_host(m, scale) for m in view.members), key=lambda h: (not h.live, h.id))
    holders: dict[str, list[tuple[str, str]]] = {}
    for h in hosts:
        if h.live:
            for s in h.served:
                holders.setdefault(s.address, []).append((h.id, s.state))
    addresses: list[AddressStatus] = []
    for row in view.rows:
        address = fmt(row.address)
        held = holders.pop(address, [])
        addresses.append(
            AddressStatus(
                address=f"{address}/{row.prefixlen}",
                preferred=fmt(row.preferred),
                holders=tuple(h for h, _ in held),
                state=_state(held),
                orphan_s=None if row.orphan_s is None else round(row.orphan_s, 3),
                set=(f"{address}/{row.prefixlen}", *_shown(row.extras)) if row.extras else (),
            )
        )
    for address, held in holders.items():
        addresses.append(
            AddressStatus(
                address=address,
                preferred=None,
                holders=tuple(h for h, _ in held),
                state=_state(held),
                orphan_s=None,
            )
        )
    addresses.sort(key=lambda a: a.address)
    return GroupStatus(
        name=view.group,
        host=fmt(view.host),
        leader=fmt(view.leader) if view.leader is not None else None,
        is_leader=view.is_leader,
        settled=view.settled,
        ok=view.ok,
        quiesced=view.quiesced,
        load_scale=scale,
        tests=tuple(tests),
        hosts=tuple(hosts),
        addresses=tuple(addresses),
        expired=tuple(sorted(fmt(a) for a in view.expired)),
        dropped=dict(view.drops),
        counters=dict(counters),
        dns=dns,
        wire_version=view.wire_version,
        common_features=view.common_features,
        link=None if interface is None else _link(view, interface, track_link),
        sets=tuple(_set(s) for s in view.sets),
        guard=_guard(view),
    )


def _guard(view: CoreView) -> GuardStatus | None:
    g = view.guard
    if g is None:
        return None
    on = g.mode != "none"
    return GuardStatus(
        mode=g.mode,
        quorate=g.quorate if on else None,
        votes=g.votes,
        needed=g.needed,
        voters=tuple(fmt(v) for v in g.voters),
        vote=None if g.vote is None else fmt(g.vote),
        key_held=g.key_held,
        token=g.token,
        arbiter=g.arbiter,
        # In force only once the key is gone, and only with "hold".
        holding=g.holding and not g.key_held and g.on_arbiter_loss == "hold",
        lease_left_s=None if g.lease_left is None else round(max(0.0, g.lease_left), 3),
        quorate_for_s=None if g.quorate_for is None else round(g.quorate_for, 3),
        on_arbiter_loss=g.on_arbiter_loss,
    )


def _link(view: CoreView, interface: str, tracked: bool) -> LinkStatus:
    if not tracked:
        return LinkStatus(interface, False, "untracked", "", None, None)
    link = view.link
    left = None if link.hold_left is None else round(link.hold_left, 3)
    since = round(view.now - link.since, 3)
    return LinkStatus(interface, True, link.state, link.reason, since, left)


def render(status: dict[str, Any]) -> str:
    """The readable table of ``rais status``."""
    lines: list[str] = []
    for p in status.get("parts", []):
        if p["state"] != "running" or p["restarts"]:
            where = f" (group {p['group']})" if p.get("group") else ""
            why = f": {p['last_error']}" if p["last_error"] else ""
            lines.append(
                f"part {p['name']}{where}: {p['state'].upper()}, {p['restarts']} restarts{why}"
            )
    if lines:
        lines.append("")
    for g in status.get("groups", []):
        lead = g["leader"] or "(none yet)"
        me = " (this host)" if g["is_leader"] else ""
        lines.append(f"group {g['name']}   leader {lead}{me}")
        for t in g.get("tests", []):
            state = {True: "passing", False: "FAILING", None: "pending"}[t["ok"]]
            why = f"  ({t['reason']})" if t["reason"] and t["ok"] is not True else ""
            lines.append(f"  test {t['name']:<20} {state}{why}")
        link = g.get("link")
        if link and link["tracked"]:
            state = {"up": "up", "down": "DOWN", "holding": "holding"}.get(link["state"], "?")
            why = f" ({link['reason']})" if link["reason"] and link["state"] != "up" else ""
            left = link.get("hold_left_s")
            hold = f", up again in {left:.1f}s" if left is not None else ""
            lines.append(f"  link {link['interface']:<20} {state}{why}{hold}")
        guard = g.get("guard")
        if guard and guard["mode"] != "none":
            lines.append(f"  guard {guard_line(guard, g['is_leader'])}")
        if "wire_version" in g:
            common = ", ".join(g.get("common_features", [])) or "none"
            lines.append(f"  wire version {g['wire_version']}, common features: {common}")
        lines.append(
            f"  {'host':<24} {'live':<5} {'ok':<5} {'quiesced':<9} {'spare':<6} "
            f"{'wire':<6} utilization (load/capacity)"
        )
        for h in g["hosts"]:
            util = h.get("utilization")
            load = f"{util} ({h['load']}/{h['capacity']})" if util is not None else "-"
            wire = ",".join(str(v) for v in h.get("wire_versions", [1]))
            paused = h.get("paused_s")
            pause = f"  paused, {paused:.0f}s left" if paused is not None else ""
            lines.append(
                f"  {h['id']:<24} {_yn(h['live']):<5} {_yn(h['ok']):<5} "
                f"{_yn(h['quiesced']):<9} {_yn(h['spare']):<6} {wire:<6} {load}{pause}"
            )
        lines.append(f"  {'address':<28} {'state':<11} {'holder':<24} preferred host")
        for a in g["addresses"]:
            holder = ",".join(a["holders"]) or "-"
            orphan = f"  orphan, expires in {a['orphan_s']:.0f}s" if a["orphan_s"] else ""
            pref = a["preferred"] or "-"
            lines.append(f"  {a['address']:<28} {a['state']:<11} {holder:<24} {pref}{orphan}")
            if a.get("set"):
                lines.append(f"    set: {' '.join(a['set'])}")
        for s in g.get("sets", []):
            parts = [f"up {' '.join(s['up']) or '-'}"]
            for what in ("adding", "removing"):
                if s[what]:
                    parts.append(f"{what} {' '.join(s[what])}")
            if s["waiting"]:
                parts.append(f"WAITING {' '.join(s['waiting'])} ({s['why']})")
            lines.append(f"  held set {s['key']}: {'; '.join(parts)}")
        dns = g.get("dns")
        if dns:
            shown = ", ".join(dns["addresses"]) or "(none)"
            if dns.get("warming"):
                shown = "(warming up: no answer yet)"
            shed = f"  (shed for load: {', '.join(dns['shed'])})" if dns.get("shed") else ""
            lines.append(f"  dns {dns['name']} -> {shown}{shed}  serial {dns['serial']}")
        dropped = sum(g["dropped"].values())
        if dropped:
            detail = ", ".join(f"{k} {v}" for k, v in sorted(g["dropped"].items()) if v)
            lines.append(f"  dropped datagrams: {detail}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def guard_line(guard: dict[str, Any], leads: bool) -> str:
    """The guard of a group in a few words (``rais status``), as leader
    (``leads``): "majority 3/5 quorate, 3 needed", "etcd key held, token 42";
    as follower: "majority, leader quorate"; then the lease left."""
    quorate = "quorate" if guard["quorate"] else "NOT QUORATE"
    if not leads:
        parts = [f"{guard['mode']}, leader {quorate}"]
    elif guard["mode"] == "majority":
        n = len(guard["voters"])
        parts = [f"majority {guard['votes']}/{n} {quorate}", f"{guard['needed']} needed"]
    else:
        parts = [
            f"etcd key held, token {guard['token']}" if guard["key_held"] else "etcd key NOT HELD"
        ]
        if guard["arbiter"] == "unreachable":
            parts.append("etcd UNREACHABLE")
        if guard["holding"]:
            parts.append("holding on, nothing new assigned")
        elif not guard["key_held"]:
            parts.append(quorate)
    left = guard.get("lease_left_s")
    if left is not None:
        parts.append(f"lease {left:.1f}s left")
    return ", ".join(parts)


def _state(held: list[tuple[str, str]]) -> str:
    if not held:
        return "unassigned"
    return held[0][1] if len(held) == 1 else "duplicate"


def _yn(v: bool) -> str:
    return "yes" if v else "no"
