"""Two nodes behind a real nginx (Debian's, configured from `deploy/nginx.conf`).

Consoles and the PBX connect only to nginx. One node is killed with SIGKILL in the middle
of calls; everything reconnects through nginx to the survivor, and nothing is lost: every
call offered is answered and recorded once, no agent is given two calls.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.harness import phone
from tests.multinode import (
    Cluster,
    DoubleAssignmentWatch,
    Pbx,
    Switch,
    offer_steadily,
    overlapping_talks,
    people,
    until,
)
from tests.nginx_front import NginxFront
from tests.test_multinode import (  # noqa: F401 (fixtures)
    check_console_snapshot,
    check_snapshot,
    cluster,
    shared_database,
    until_drained,
)


@pytest.fixture
def front_of(tmp_path: Path) -> Iterator[object]:
    fronts: list[NginxFront] = []

    def start(node_urls: list[str]) -> NginxFront:
        front = NginxFront(tmp_path / "nginx", [int(u.rsplit(":", 1)[1]) for u in node_urls])
        fronts.append(front)
        front.start()
        return front

    yield start
    for front in fronts:
        front.stop()


async def _dropped(pbx: Pbx, within: float) -> bool:
    """Whether the PBX's connection ends within `within` seconds (its node died)."""
    assert pbx._reader is not None
    try:
        await asyncio.wait_for(asyncio.shield(pbx._reader), within)
    except TimeoutError:
        return False
    return True


@pytest.mark.timeout(180)
async def test_a_node_killed_behind_nginx_loses_nothing(cluster: Cluster,  # noqa: F811
                                                        front_of: object) -> None:
    cluster.agents = await cluster.deployment.prepare(agents=6, customers=60)
    await cluster.start(2, CALLCENTER_RING_TIMEOUT_S="5", CALLCENTER_WRAP_UP_S="3",
                        CALLCENTER_TRUSTED_PROXIES="127.0.0.1")
    front = front_of(cluster.urls)  # type: ignore[operator]
    nodes, cluster.urls = cluster.urls, [front.url]  # clients know only the balancer
    switch = Switch(talk_s=(0.2, 0.6))
    async with people(cluster, switch, ["pbx-0"], 6, wrap_s=0.3) as (pbxs, agents), \
            DoubleAssignmentWatch(cluster) as watch:
        offers = itertools.count()
        load = switch.spawn(offer_steadily(pbxs, offers, rate=10))
        await until(lambda: sum(c.state == "ended" for c in switch.calls.values()) >= 10, 30)
        switch.running.clear()  # the PBX and consoles pause while clients move
        unacked = await pbxs[0].offer(f"k-{next(offers)}", phone(99))
        cluster.procs[1].kill()
        cluster.procs[1].wait()

        await until(lambda: any(a.reconnects for a in agents), timeout=20)
        if await _dropped(pbxs[0], within=5):
            resent, snapshot = await pbxs[0].reconnect(front.url)
            assert unacked.offer_event in resent
            check_snapshot(switch, pbxs[0], snapshot)
        switch.running.set()
        await until(lambda: sum(c.state == "ended" for c in switch.calls.values()) >= 30, 60)
        load.cancel()
        await until(lambda: all(c.state == "ended" for c in switch.calls.values()), 30)
        await until_drained(cluster, pbxs, timeout=30)

    moved = [a for a in agents if a.reconnects]
    assert moved, "no console was on the killed node: least_conn spreads six consoles"
    for agent in moved:
        check_console_snapshot(agent.reconnects[0])
    assert not [e for p in pbxs for e in p.errors], [e for p in pbxs for e in p.errors][:5]
    assert not watch.violations and not switch.violations, (watch.violations[:3],
                                                             switch.violations[:3])
    records = await cluster.interactions()
    assert sorted(r.call_id for r in records) == sorted(switch.calls)
    assert {r.outcome for r in records} == {"answered"}
    assert not overlapping_talks(records)
    print(f"{len(records)} calls; {len(moved)} consoles moved; nodes were {nodes}")
