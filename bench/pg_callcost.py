"""What one whole call costs PostgreSQL: statements, transactions, round trips, CPU.

One `callcenter serve` node on a fresh PostgreSQL database (created here, dropped after)
and a redis-server started here; calls offered to connected agents, answered after 0.1 s,
ended after a short talk (0.5 s mean), wrap-up done at once. Two phases per run:

- **statements**: with `log_statement = all` set on the database (for its sessions only),
  first `--calls` calls one after the other, then calls at `--rate` for `--duration` s;
  the server log's lines of this database are counted by kind (BEGIN, COMMIT, SELECT,
  INSERT, UPDATE, ...; a row of an executemany is one execution) and divided by the calls.
  The idle rate, measured for `--idle` s before, is taken off.
- **cost** (logging off, a fresh node): calls at `--rate` for `--duration` s; per call
  offered: the node's CPU (the client side: the record writer, the screen-pop reads), the
  CPU of the database's backends (/proc/<pid>/stat, sampled every 0.25 s), transactions
  (pg_stat_database), and round trips (TCP data segments the node sent to port 5432,
  from `ss -ti`: one per query, a prepare adds one).

Trees are alternated in one run, so that other work on the machine hits each alike:

    git worktree add --detach /tmp/soak-base 796f7fe
    nice -n -15 .venv/bin/python bench/pg_callcost.py --tree /tmp/soak-base --tree . --rounds 3

(a tree is put first on the node's PYTHONPATH; its schema is made by its own migrations.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent))

from callpath_probe import prepare  # noqa: E402
from harness import Deployment, LoadRun, cpu_s, free_port, wait_healthy, workdir  # noqa: E402
from multinode_bench import redis_server  # noqa: E402

ADMIN = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
LOG = Path("/var/log/postgresql/postgresql-15-main.log")
_LINE = re.compile(r"^\S+ \S+ \S+ \[(\d+)\] \S+@(\S+) LOG:  (?:statement|execute [^:]*): "
                   r"\s*(\w*)(.*)")
# The table a statement is about: its INSERT INTO / UPDATE / DELETE FROM / first FROM.
_TABLE = re.compile(r"(?:INTO|UPDATE|FROM)\s+\"?(\w+)", re.IGNORECASE)


class Database:
    """A fresh database, its backends' CPU, its transactions; administered from `postgres`
    so that the sampling adds no transaction of its own to the database's count."""

    def __init__(self, prefix: str, admin: str = ADMIN) -> None:
        self.name = f"{prefix}_{secrets.token_hex(3)}"
        self.admin_url = admin
        self.url = make_url(admin).set(database=self.name).render_as_string(
            hide_password=False)

    async def __aenter__(self) -> Database:
        self.admin = create_async_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        await self.execute(f'CREATE DATABASE "{self.name}"')
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await self.admin.dispose()

    async def execute(self, sql: str, **params: Any) -> list[Any]:
        async with self.admin.connect() as conn:
            result = await conn.execute(text(sql), params)
            return list(result) if result.returns_rows else []

    async def log_statements(self, on: bool) -> None:
        change = "SET log_statement = 'all'" if on else "RESET log_statement"
        await self.execute(f'ALTER DATABASE "{self.name}" {change}')

    async def transactions(self) -> int:
        await asyncio.sleep(1.2)  # backends report their counts at most once a second
        rows = await self.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                                  "WHERE datname = :d", d=self.name)
        return int(rows[0][0])

    async def backends(self) -> list[int]:
        rows = await self.execute("SELECT pid FROM pg_stat_activity WHERE datname = :d",
                                  d=self.name)
        return [pid for (pid,) in rows]


class BackendCpu:
    """CPU of the database's backends, and the node's round trips to them, between entry
    and exit, sampled every 0.25 s (what a backend or connection does after its last
    sample is missed; the pool keeps most of its connections)."""

    def __init__(self, database: Database, node: int) -> None:
        self.database, self.node = database, node
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.trips_first: dict[str, int] = {}
        self.trips_last: dict[str, int] = {}

    async def __aenter__(self) -> BackendCpu:
        await self._sample(born=False)
        self.task = asyncio.create_task(self._forever())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self._sample()

    def used(self) -> float:
        return sum(last - self.first[pid] for pid, last in self.last.items())

    def round_trips(self) -> int:
        """Data segments the node sent (a connection opened in the window counts from 0;
        one closed counts to its last sample)."""
        return sum(last - self.trips_first[c] for c, last in self.trips_last.items())

    async def _sample(self, born: bool = True) -> None:
        for conn, sent in sent_segments(self.node).items():
            self.trips_first.setdefault(conn, 0 if born else sent)
            self.trips_last[conn] = sent
        for pid in await self.database.backends():
            with contextlib.suppress(OSError):
                now = cpu_s(pid)
                self.first.setdefault(pid, 0.0 if born else now)
                self.last[pid] = now

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            await self._sample()


def sent_segments(pid: int) -> dict[str, int]:
    """TCP data segments process `pid` has sent to PostgreSQL, by open connection."""
    out = subprocess.run(["ss", "-tinpH", "( dport = :5432 )"], capture_output=True,
                         text=True, check=True).stdout
    sent, ours = {}, ""
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):
            ours = line.split()[3] if f"pid={pid}," in line else ""
        elif ours and (m := re.search(r"data_segs_out:(\d+)", line)):
            sent[ours] = int(m.group(1))
    return sent


class StatementLog:
    """The server log's statement lines of one database, by first word."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.offset = LOG.stat().st_size

    def take(self) -> Counter[str]:
        with LOG.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        seen: Counter[str] = Counter()
        lines = data.decode(errors="replace").splitlines()
        for n, line in enumerate(lines):
            m = _LINE.match(line)
            if m and m.group(2) == self.database:
                # A statement that starts with a line break: its text is on the next lines.
                head = f"{m.group(3)}{m.group(4)}".strip().rstrip(";")
                if not head:
                    head = " ".join(lines[n + 1:n + 3])
                kind = head.split()[0].upper() if head.split() else "?"
                follows = lines[n + 1:n + 3] if kind in ("SELECT", "WITH") else []
                table = _TABLE.search(" ".join([head, *follows]))
                seen[f"{kind} {table.group(1)}" if table else kind] += 1
        return seen


async def offered_calls(url: str, dep: Deployment, tokens: list[tuple[int, str]],
                        rate: float, duration: float, tag: str,
                        begin: Callable[[], Awaitable[None]] | None = None) -> int:
    """Calls at `rate` for `duration` s, until all are done; `begin` is called once the
    agents are signed in and available (their sign-ins are not the calls' cost)."""
    async with LoadRun([url], tokens, dep.pbx_token, talk_s=0.5) as run:
        await asyncio.sleep(2)
        if begin is not None:
            await begin()
        offered = await run.offer_at_rate(rate, duration, 1000, tag=tag)
        deadline = time.monotonic() + 30
        while run.stats.completed < offered and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # the last wrap-ups and their writes
        return offered if run.stats.completed >= offered else -run.stats.completed


@contextlib.asynccontextmanager
async def node(tree: Path, dep: Deployment) -> AsyncIterator[tuple[str, int]]:
    dep.procs.clear()
    url = dep.start_node(free_port(), PYTHONPATH=str(tree), CALLCENTER_WRAP_UP_S="30",
                         CALLCENTER_RING_TIMEOUT_S="30")
    try:
        await wait_healthy(url)
        yield url, dep.procs[0].pid
    finally:
        dep.stop()


async def statements(tree: Path, dep: Deployment, database: Database,
                     tokens: list[tuple[int, str]], args: argparse.Namespace) -> dict[str, Any]:
    await database.log_statements(True)
    async with node(tree, dep) as (url, _):
        log = StatementLog(database.name)
        await asyncio.sleep(args.idle)
        idle = log.take()
        window: list[float] = []

        async def begin() -> None:
            log.take()
            window.append(time.monotonic())

        await offered_calls(url, dep, tokens[:1], 1 / 1.5, args.calls * 1.5, "s", begin)
        one = less_idle(log.take(), idle, args.idle, time.monotonic() - window[-1])
        loaded = await offered_calls(url, dep, tokens[1:], args.rate, args.duration, "l", begin)
        many = less_idle(log.take(), idle, args.idle, time.monotonic() - window[-1])
    await database.log_statements(False)
    return {"one_by_one": per_call(one, args.calls), "loaded": per_call(many, abs(loaded)),
            "idle_per_s": per_call(idle, args.idle)}


def less_idle(seen: Counter[str], idle: Counter[str], idle_s: float,
              window: float) -> Counter[str]:
    return Counter({k: n - idle[k] * window / idle_s for k, n in seen.items()})


def per_call(seen: Counter[str], calls: float) -> dict[str, float]:
    return {k: n / calls for k, n in seen.most_common()}


def by_kind(per: dict[str, float]) -> dict[str, float]:
    kinds: Counter[str] = Counter()
    for key, n in per.items():
        kinds[key.split()[0]] += n  # type: ignore[assignment]
    return {k: n for k, n in kinds.most_common()}


async def cost(tree: Path, dep: Deployment, database: Database,
               tokens: list[tuple[int, str]], args: argparse.Namespace,
               redis_pid: int) -> dict[str, Any]:
    async with node(tree, dep) as (url, pid):
        await offered_calls(url, dep, tokens, args.rate, 3, "w")  # warm: pool, statements
        before: list[float] = []
        cpu = BackendCpu(database, pid)

        async def begin() -> None:
            before.extend((cpu_s(pid), cpu_s(redis_pid), await database.transactions()))
            await cpu.__aenter__()

        offered = await offered_calls(url, dep, tokens, args.rate, args.duration, "c", begin)
        await cpu.__aexit__()
        after = (cpu_s(pid), cpu_s(redis_pid), await database.transactions())
    calls = max(abs(offered), 1)
    node_s, redis_s, xacts = (b - a for a, b in zip(before, after, strict=True))
    trips = cpu.round_trips()
    return {"offered": offered, "node_ms": node_s * 1000 / calls,
            "redis_ms": redis_s * 1000 / calls, "pg_ms": cpu.used() * 1000 / calls,
            "transactions": xacts / calls, "round_trips": trips / calls}


async def one(tree: Path, args: argparse.Namespace, redis: tuple[str, int],
              tmp: Path) -> dict[str, Any]:
    async with Database("test_s9soak_cc") as database:
        dep = Deployment(tmp, database.url, redis[0])
        tokens = await prepare(tree, dep, args.agents)
        counted = await statements(tree, dep, database, tokens, args)
        result = await cost(tree, dep, database, tokens, args, redis[1])
        await aioredis.from_url(redis[0]).flushall()
    return {**counted, **result}



def show(tree: Path, r: dict[str, Any], first: bool) -> None:
    def kinds(per: dict[str, float]) -> str:
        return ", ".join(f"{k} {v:.1f}" for k, v in per.items() if abs(v) >= 0.05)
    print(f"{tree}: statements per call one by one {sum(r['one_by_one'].values()):.1f}, "
          f"at {r['rate']:g}/s {sum(r['loaded'].values()):.1f}; per call at {r['rate']:g}/s: "
          f"transactions {r['transactions']:.2f}, round trips {r['round_trips']:.1f}, CPU "
          f"node {r['node_ms']:.2f} ms, postgres {r['pg_ms']:.2f} ms, redis "
          f"{r['redis_ms']:.2f} ms (offered {r['offered']}; negative: not all done)",
          flush=True)
    if first:
        print(f"    one by one: {kinds(by_kind(r['one_by_one']))}\n"
              f"    at {r['rate']:g}/s: {kinds(by_kind(r['loaded']))}\n"
              f"    at {r['rate']:g}/s by table: {kinds(r['loaded'])}\n"
              f"    one by one, by table: {kinds(r['one_by_one'])}\n"
              f"    idle per second: {kinds(r['idle_per_s'])}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, action="append", default=[])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--calls", type=int, default=5, help="calls made one by one")
    parser.add_argument("--agents", type=int, default=101)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--idle", type=float, default=5.0)
    args = parser.parse_args()
    trees = [t.resolve() for t in args.tree or [Path(".")]]
    results: dict[Path, list[dict[str, Any]]] = {t: [] for t in trees}
    with workdir(None) as tmp, redis_server(tmp) as redis:
        for r in range(args.rounds):
            print(f"round {r + 1}, load average {os.getloadavg()[0]:.1f}", flush=True)
            for tree in trees:
                res = {**await one(tree, args, redis, tmp), "rate": args.rate}
                results[tree].append(res)
                show(tree, res, r == 0)
                await aioredis.from_url(redis[0]).flushall()
    print("\nmedians per call:")
    for tree, rs in results.items():
        med = {k: statistics.median(r[k] for r in rs)
               for k in ("transactions", "round_trips", "node_ms", "pg_ms", "redis_ms")}
        statements = statistics.median(sum(r["loaded"].values()) for r in rs)
        print(f"  {tree}: statements {statements:.1f}, transactions {med['transactions']:.2f}, "
              f"round trips {med['round_trips']:.1f}, CPU node {med['node_ms']:.2f} ms, "
              f"postgres {med['pg_ms']:.2f} ms, redis {med['redis_ms']:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
