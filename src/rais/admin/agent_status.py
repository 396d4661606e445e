"""The agent's status (``GET /v1/status``, ``rais status``, the dashboard, the
metrics) as a typed view (``rais.admin.status_view.AgentStatus``): this host, its
supervised parts, and every group it runs with that group's tests and DNS.
Each group's own part is ``rais.admin.status.group_status``; the JSON is
``rais.admin.status_view.status_json``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rais import __version__
from rais.admin.status import group_status
from rais.admin.status_view import AgentStatus, PartStatus, TestStatus
from rais.dns.group import GroupDns
from rais.runtime.group import GroupRunner

TestStates = Callable[[], Mapping[str, Any]]
"""The current state of every test object, by name (``Probes.test_states``)."""


def agent_status(
    now: float,
    *,
    host: str,
    epoch: int,
    parts: Iterable[PartStatus],
    runners: Iterable[GroupRunner],
    dns: Mapping[str, GroupDns],
    test_states: TestStates,
) -> AgentStatus:
    """The whole status; ``now`` is the loop's clock, ``parts`` the supervisor's."""
    groups = []
    for r in runners:
        gd = dns.get(r.config.name)
        groups.append(
            group_status(
                r.core.view(now),
                dict(r.counters) | _transport_counters(r),
                scale=r.config.load_scale,
                tests=_tests(r.config.tests, now, test_states()),
                dns=gd.status() if gd is not None else None,
                interface=r.config.interface,
                track_link=r.tracks_link,
            )
        )
    return AgentStatus(
        version=__version__, host=host, epoch=epoch, parts=tuple(parts), groups=tuple(groups)
    )


def _tests(names: tuple[str, ...], now: float, states: Mapping[str, Any]) -> list[TestStatus]:
    out = []
    for name in names:
        st = states.get(name)
        out.append(
            TestStatus(
                name=name,
                ok=None if st is None else st.ok,
                reason="" if st is None else st.reason,
                since_s=None if st is None or st.ok is None else round(now - st.since, 3),
            )
        )
    return out


def _transport_counters(runner: GroupRunner) -> dict[str, int]:
    return {f"transport_{k}": int(v) for k, v in runner.drivers.transport.counters.items()}
