"""Soak: the full call flow at a steady rate for a long time, checked for losses.

Every call is offered, routed, screen-popped, answered, ended and wrapped up by simulated
agents and a simulated PBX (bench/harness.py). Afterwards the interaction records are
checked: every offered call ended, no agent had two calls at once. Each minute prints the
screen-pop p50/p99 of calls routed on arrival, how many routing held, each node's resident
memory, the CPU of the nodes, redis-server and PostgreSQL backends per call offered in that
minute, and the machine's load average (other work on a shared host shows there).

Default: one `callcenter serve` on a SQLite file with its embedded Redis. With `--nodes 2`
(or more) the nodes share one redis-server started here; `--nginx` puts Debian's nginx in
front of them, configured from `deploy/nginx.conf` as tests/test_nginx.py does, and the
agents and the PBX connect only to nginx. `--postgres URL` uses that PostgreSQL database
instead of SQLite: **its public schema is dropped and recreated at the start**.

    .venv/bin/python bench/soak_bench.py                       # 10 min, 300 agents, 10 calls/s
    .venv/bin/python bench/soak_bench.py --minutes 1 --agents 100 --rate 5   # a short look
    nice -n -10 .venv/bin/python bench/soak_bench.py --minutes 30 --agents 1000 --rate 20 \\
        --nodes 2 --nginx --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/soak
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.nginx_front

from harness import (  # noqa: E402
    Deployment,
    LoadRun,
    cpu_s,
    free_port,
    percentile,
    rss_mb,
    split_held,
    wait_healthy,
    workdir,
)
from multinode_bench import redis_server  # noqa: E402

from core import db  # noqa: E402
from core.models import Interaction  # noqa: E402


class Backends:
    """CPU seconds used by the PostgreSQL backends of one database, sampled every second.

    A backend's CPU after its last sample, or of one that lived between two samples, is
    missed; the node pools keep their connections, so that is the odd overflow one.
    """

    def __init__(self, url: str | None, renice: bool = False) -> None:
        self.url, self.renice = url, renice
        self.seen: dict[int, tuple[float, float]] = {}  # pid -> (first, last)

    async def __aenter__(self) -> Backends:
        if self.url:
            from sqlalchemy.engine import make_url

            self.name = make_url(self.url).database
            self.engine = db.create_engine(self.url)
            self.task = asyncio.create_task(self._sample_forever())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.url:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            await self.engine.dispose()

    def used(self) -> float:
        return sum(last - first for first, last in self.seen.values())

    async def _sample_forever(self) -> None:
        born = False  # backends there at the start count from their first sample
        while True:
            async with self.engine.connect() as conn:
                pids = (await conn.scalars(text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = :d AND "
                    "pid <> pg_backend_pid()"), {"d": self.name})).all()
            for pid in pids:
                with contextlib.suppress(OSError):
                    if self.renice and pid not in self.seen:
                        os.setpriority(os.PRIO_PROCESS, pid, os.getpriority(os.PRIO_PROCESS, 0))
                    now = cpu_s(pid)
                    first = self.seen.get(pid, (0.0 if born else now, 0.0))[0]
                    self.seen[pid] = (first, now)
            born = True
            await asyncio.sleep(1)


class Minutes:
    """One line per minute: latency, memory, CPU per call, load average."""

    def __init__(self, run: LoadRun, nodes: list[int], redis: int | None,
                 backends: Backends) -> None:
        self.run, self.nodes, self.redis, self.backends = run, nodes, redis, backends
        self.rows: list[dict[str, Any]] = []

    def cpu(self) -> tuple[float, float, float]:
        redis = cpu_s(self.redis) if self.redis else 0.0
        return sum(cpu_s(pid) for pid in self.nodes), redis, self.backends.used()

    def start(self) -> None:
        self.mark = len(self.run.stats.pop_latency)
        self.cpu_mark = self.cpu()

    def end(self, minute: int, offered: int) -> None:
        stats = self.run.stats
        window, held = split_held([s for _, s in stats.pop_latency[self.mark:]],
                                  stats.held[self.mark:])
        cpu = [(b - a) / max(offered, 1) * 1000
               for a, b in zip(self.cpu_mark, self.cpu(), strict=True)]
        row = {"minute": minute, "offered": offered, "popped": len(window) + len(held),
               "p50_ms": percentile(window, 50) * 1000, "p99_ms": percentile(window, 99) * 1000,
               "held": len(held), "rss_mb": [rss_mb(pid) for pid in self.nodes],
               "cpu_ms": cpu, "load": os.getloadavg()[0]}
        self.rows.append(row)
        print(line(row), flush=True)


def line(r: dict[str, Any]) -> str:
    rss = " + ".join(f"{m:.1f}" for m in r["rss_mb"])
    node, redis, pg = r["cpu_ms"]
    return (f"| {r['minute']} | {r['offered']} | {r['popped']} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['held']} | {rss} | {node:.1f} / {redis:.2f} / {pg:.2f} | "
            f"{r['load']:.1f} |")


HEADER = ("| minute | offered | popped | on arrival p50 ms | p99 ms | held by routing | "
          "node RSS MB | CPU ms per call: nodes / redis / postgres | load avg (1 min) |\n"
          "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


async def reset_schema(url: str) -> None:
    """An empty public schema: the soak's counts are of its own calls only."""
    engine = db.create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


@contextlib.contextmanager
def shared_redis(args: argparse.Namespace, tmp: Path) -> Iterator[tuple[str | None, int | None]]:
    if args.nodes == 1 and not args.redis_server:
        yield None, None  # the node's embedded Redis
        return
    with redis_server(tmp) as (url, pid):
        yield url, pid


@contextlib.asynccontextmanager
async def front(args: argparse.Namespace, tmp: Path, urls: list[str]) -> AsyncIterator[list[str]]:
    """The URLs the clients use: nginx's when asked for, else the nodes' own."""
    if not args.nginx:
        yield urls
        return
    from tests.nginx_front import NginxFront

    nginx = NginxFront(tmp / "nginx", [int(u.rsplit(":", 1)[1]) for u in urls])
    nginx.start()
    try:
        yield [nginx.url]
    finally:
        nginx.stop()


async def soak(args: argparse.Namespace) -> int:
    with workdir(args.workdir) as tmp, shared_redis(args, tmp) as (redis_url, redis_pid):
        database_url = args.postgres or f"sqlite+aiosqlite:///{tmp / 'soak.db'}"
        if args.postgres:
            await reset_schema(args.postgres)
        deployment = Deployment(tmp, database_url, redis_url)
        tokens = await deployment.prepare(args.agents, args.customers)
        urls = [deployment.start_node(free_port(), CALLCENTER_RING_TIMEOUT_S="30",
                                      CALLCENTER_WRAP_UP_S="5",
                                      CALLCENTER_TRUSTED_PROXIES="127.0.0.1")
                for _ in range(args.nodes)]
        try:
            await asyncio.gather(*(wait_healthy(url) for url in urls))
            result = await drive(args, deployment, tokens, urls, redis_pid)
        finally:
            deployment.stop()
        engine = db.create_engine(deployment.database_url)
        async with db.sessionmaker(engine)() as session:
            records = (await session.scalars(select(Interaction))).all()
        await engine.dispose()
    return report(records, result)


async def drive(args: argparse.Namespace, deployment: Deployment,
                tokens: list[tuple[int, str]], urls: list[str],
                redis_pid: int | None) -> dict[str, Any]:
    pids = [p.pid for p in deployment.procs]
    async with front(args, deployment.workdir, urls) as client_urls, \
            Backends(args.postgres, args.renice_backends) as backends, \
            LoadRun(client_urls, tokens,
                    await deployment.telephony_tokens(len(client_urls), "soak-pbx"),
                    talk_s=args.talk) as run:
        await asyncio.sleep(3)
        offered = 0
        if args.warmup:
            offered = await run.offer_at_rate(args.rate, args.warmup, args.customers, tag="w")
            print(f"warm-up: {offered} calls in {args.warmup:g} s", flush=True)
        start_rss = [rss_mb(pid) for pid in pids]
        print(f"start: {' + '.join(f'{m:.1f}' for m in start_rss)} MB resident; "
              f"load average {os.getloadavg()[0]:.1f}\n{HEADER}", flush=True)
        minutes = Minutes(run, pids, redis_pid, backends)
        for minute in range(1, args.minutes + 1):
            minutes.start()
            count = await run.offer_at_rate(args.rate, 60, args.customers, tag=f"m{minute}")
            offered += count
            minutes.end(minute, count)
        # Let the last calls finish: talk time plus wrap-up.
        await drained(run, offered, args.talk * 6 + 250)
        end_rss = [rss_mb(pid) for pid in pids]
        return {"offered": offered, "errors": run.stats.errors, "start_rss": start_rss,
                "end_rss": end_rss, "rows": minutes.rows}


async def drained(run: LoadRun, offered: int, limit: float) -> None:
    deadline = time.monotonic() + limit
    while run.stats.completed < offered and time.monotonic() < deadline:
        await asyncio.sleep(1)
    await asyncio.sleep(8)  # the last wrap-ups and the group writer's flush


def report(records: list[Interaction], result: dict[str, Any]) -> int:
    offered, errors = result["offered"], result["errors"]
    ended = [r for r in records if r.ended_at is not None]
    completed = [r for r in ended if r.outcome == "answered" and r.disposition]
    lost = offered - len(ended)
    talks: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for r in records:
        if r.answered_at and r.ended_at and r.agent_id is not None:
            talks[r.agent_id].append((r.answered_at.timestamp(), r.ended_at.timestamp()))
    overlaps = 0
    for spans in talks.values():
        spans.sort()
        overlaps += sum(1 for (_, end), (start, _) in pairwise(spans) if start < end)
    start, end = sum(result["start_rss"]), sum(result["end_rss"])
    growth = (end - start) / start * 100
    rows = result["rows"]
    after_first = sum(rows[0]["rss_mb"]) if rows else start
    p99s = [r["p99_ms"] for r in rows]
    print(f"\noffered {offered}, recorded {len(records)}, ended {len(ended)}, "
          f"completed with wrap-up {len(completed)}")
    print(f"lost {lost}, double-assigned (overlapping talks of one agent) {overlaps}, "
          f"error frames {len(errors)}")
    print(f"memory (all nodes) {start:.1f} MB -> {end:.1f} MB ({growth:+.1f}%); from the end "
          f"of minute 1: {(end - after_first) / after_first * 100:+.1f}%")
    if p99s:
        print(f"per-minute p99 {min(p99s):.1f}-{max(p99s):.1f} ms, median "
              f"{percentile(p99s, 50):.1f} ms; load average {min(r['load'] for r in rows):.1f}"
              f"-{max(r['load'] for r in rows):.1f}")
    ok = lost == 0 and overlaps == 0 and not errors and growth < 10
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def enough_files(agents: int) -> None:
    """A socket per agent here, two per agent in nginx (a child: it inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, 4 * agents + 1024)
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--agents", type=int, default=300)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=10.0, help="calls offered per second")
    parser.add_argument("--talk", type=float, default=10.0, help="mean talk time, seconds")
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--nginx", action="store_true", help="clients connect through nginx")
    parser.add_argument("--redis-server", action="store_true",
                        help="one node on a redis-server started here, not its embedded one")
    parser.add_argument("--postgres", default=None, metavar="URL",
                        help="PostgreSQL database to use (its public schema is recreated)")
    parser.add_argument("--warmup", type=float, default=0.0,
                        help="seconds of calls before the start memory is read (checked too)")
    parser.add_argument("--renice-backends", action="store_true",
                        help="give the database's PostgreSQL backends this process's priority")
    parser.add_argument("--workdir", type=Path, default=None)
    return parser.parse_args()


def main() -> None:
    args = parse()
    enough_files(args.agents)
    raise SystemExit(asyncio.run(soak(args)))


if __name__ == "__main__":
    main()
