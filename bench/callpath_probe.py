"""Where one whole call goes: Redis commands per event, and CPU per call.

One `callcenter serve` node on a SQLite file (or, with `--postgres ADMIN_URL`, on a
PostgreSQL database made for each run and dropped after) and a redis-server started
here. Two phases:

- **count**: a few calls one after the other (offer, answer, end, wrap-up done; one
  more before them, not counted, warms up), with
  Redis MONITOR on: the commands the node sent (top level: a script is one, the commands
  it runs are not counted) after each event, by command name.
- **cpu**: calls offered at a steady rate to the connected agents, answered after 0.1 s,
  ended after a short talk, wrap-up finished at once; node and redis-server CPU over the
  window and until every call is done, per call. Then the node's idle CPU.

On PostgreSQL (asyncpg on the node's loop: no worker threads, no page I/O in the node,
so the call path's own cost shows) the count phase also counts each event's statements
(`log_statement = all` on the run's database only; a row of an executemany is one) and
round trips to PostgreSQL (TCP data segments the node sent, `ss -ti`); then a loaded
window counts the statements per call at `--rate` (a node of its own: the setting
reaches new sessions only), and the cpu phase, on a fresh node with logging off, adds
the database backends' CPU, transactions and round trips per call:

    nice -n -15 .venv/bin/python bench/callpath_probe.py --tree /tmp/old-tree --tree . \
        --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres --rounds 2

Trees are alternated in one run so that other work on the machine hits each alike:

    .venv/bin/python bench/callpath_probe.py --tree /tmp/old-tree --tree . --rounds 3

(a tree is put first on the node's PYTHONPATH; `git archive <commit> | tar -x -C DIR`
makes one). Settings are alternated the same way, each `--setting` a variant of every
tree (`NAME=VALUE[,NAME=VALUE]`; none: the defaults):

    .venv/bin/python bench/callpath_probe.py --setting CALLCENTER_REPORT_ROLLUPS=false \
        --setting CALLCENTER_REPORT_ROLLUPS=true --rounds 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    Deployment,
    LoadRun,
    cpu_s,
    free_port,
    switches,
    syscalls,
    wait_healthy,
    workdir,
)
from multinode_bench import redis_server  # noqa: E402

_MONITOR = re.compile(r'^([\d.]+) \[\d+ ([^\]]+)\] "([^"]+)"')
# Commands of one pipeline reach MONITOR from one client a few microseconds apart.
_SAME_TRIP_S = 0.0002


class Monitor:
    """Top-level commands other clients send, read from MONITOR, and round trips (a
    pipeline's commands, arriving together from one client, count as one)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: Counter[str] = Counter()
        self._last = ("", 0.0)

    async def __aenter__(self) -> Monitor:
        self.reader, self.writer = await asyncio.open_connection(
            *self.url.removeprefix("redis://").split("/")[0].split(":"))
        self.writer.write(b"MONITOR\r\n")
        await self.reader.readline()
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        while line := await self.reader.readline():
            m = _MONITOR.match(line.decode(errors="replace").lstrip("+"))
            if m and m.group(2) != "lua":
                self.seen[m.group(3).lower()] += 1
                at, client = float(m.group(1)), m.group(2)
                if client != self._last[0] or at - self._last[1] > _SAME_TRIP_S:
                    self.seen["(round trips)"] += 1
                self._last = (client, at)

    def take(self) -> Counter[str]:
        seen, self.seen = self.seen, Counter()
        return seen

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        self.writer.close()


class SqlCount:
    """Statements (by kind and table, from the server log) and round trips (data
    segments the node sent to PostgreSQL) since the last `take`."""

    def __init__(self, database: str, node: int) -> None:
        from pg_callcost import StatementLog

        self.log, self.node = StatementLog(database), node
        self.trips = self._trips()

    def _trips(self) -> int:
        from pg_callcost import sent_segments

        return sum(sent_segments(self.node).values())

    def take(self) -> Counter[str]:
        seen = self.log.take()
        trips = self._trips()
        # A connection the pool closed meanwhile takes its segments with it.
        seen["(round trips)"] = max(trips - self.trips, 0)
        self.trips = trips
        return seen


async def count_phase(url: str, redis_url: str, dep: Deployment,
                      tokens: list[tuple[int, str]], calls: int,
                      sql: SqlCount | None = None,
                      ) -> tuple[dict[str, Counter[str]], dict[str, Counter[str]]]:
    """Commands per event kind, summed over `calls` calls made one after the other; with
    `sql`, the statements and PostgreSQL round trips per event kind too."""
    import aiohttp

    per: dict[str, Counter[str]] = {}
    per_sql: dict[str, Counter[str]] = {}
    no_sql = Counter[str]()
    auth = {"Authorization": f"Bearer {tokens[0][1]}"}
    async with aiohttp.ClientSession() as http, Monitor(redis_url) as mon:
        agent = await http.ws_connect(f"{url}/ws/agent", headers=auth)
        pbx = await http.ws_connect(f"{url}/ws/telephony",
                                    headers={"Authorization": f"Bearer {dep.pbx_token}"})
        await agent.send_str(json.dumps({"type": "agent.state.set", "state": "available"}))
        await _until(agent, lambda m: m.get("type") == "agent.state"
                     and m.get("state") == "available")
        mon.take()
        if sql:
            sql.take()
        await asyncio.sleep(5)
        idle = mon.take()
        idle_sql = sql.take() if sql else no_sql
        print("    idle commands per second: " + ", ".join(
            f"{c} {n / 5:.1f}" for c, n in idle.most_common()))
        if sql:
            print("    idle statements per second: " + ", ".join(
                f"{c} {n / 5:.1f}" for c, n in idle_sql.most_common()))
        for n in range(-1, calls):  # the first one warms up (connections, statements)
            cid = f"p-{n}-{time.time_ns()}"
            steps = [
                ("offered", pbx, {"type": "call.offered", "event_id": f"o{cid}", "call_id": cid,
                                  "ani": "+8613800000001", "queue": "default"},
                 lambda m: m.get("type") == "screen_pop"),
                ("answered", pbx, {"type": "call.answered", "event_id": f"a{cid}",
                                   "call_id": cid, "agent_id": tokens[0][0]},
                 lambda m: m.get("type") == "call.connected"),
                ("ended", pbx, {"type": "call.ended", "event_id": f"e{cid}", "call_id": cid,
                                "cause": "normal"},
                 lambda m: m.get("type") == "call.ended"),
                ("wrapup", agent, {"type": "wrapup.done", "call_id": cid,
                                   "disposition": "resolved"},
                 lambda m: m.get("type") == "agent.state" and m.get("state") == "available"),
            ]
            for name, ws, frame, done in steps:
                mon.take()
                if sql:
                    sql.take()
                t0 = time.perf_counter()
                await ws.send_str(json.dumps(frame))
                await _until(agent, done)
                if ws is pbx:
                    await _until(pbx, lambda m: m.get("type") == "ack")
                await settle(mon)
                window = time.perf_counter() - t0
                if n < 0:
                    continue
                per.setdefault(name, Counter()).update(less_idle(mon.take(), idle, 5, window))
                if sql:
                    per_sql.setdefault(name, Counter()).update(
                        less_idle(sql.take(), idle_sql, 5, window))
        await agent.close()
        await pbx.close()
    return per, per_sql


async def settle(mon: Monitor, window: float = 0.5) -> None:
    """A fixed window for the node's follow-up writes (the idle loops' commands in it are
    taken off later, at the rate measured before)."""
    await asyncio.sleep(window)


def less_idle(seen: Counter[str], idle: Counter[str], idle_s: float,
              window: float) -> Counter[str]:
    out = Counter({c: n - idle[c] * window / idle_s for c, n in seen.items()})
    return Counter({c: n for c, n in out.items() if n > 0.05})


async def _until(ws, done) -> dict:  # type: ignore[no-untyped-def]
    while True:
        msg = json.loads((await asyncio.wait_for(ws.receive(), 30)).data)
        if msg.get("type") == "error":
            raise RuntimeError(msg)
        if done(msg):
            return msg


async def cpu_phase(url: str, dep: Deployment, tokens: list[tuple[int, str]], node_pid: int,
                    redis_pid: int, rate: float, duration: float, idle_s: float,
                    database: Any = None) -> dict:
    """CPU per call at `rate`; with `database` (pg_callcost.Database), its backends' CPU,
    its transactions and the node's round trips to it per call as well."""
    async with LoadRun([url], tokens, dep.pbx_token, talk_s=0.5) as run:
        await asyncio.sleep(2)
        await run.offer_at_rate(rate, 3, 1000, tag="w")
        await _drain(run, 15)
        pg = await _backends(database, node_pid)
        before = (cpu_s(node_pid), cpu_s(redis_pid), run.stats.completed)
        calls0, switches0 = syscalls(node_pid), switches(node_pid)
        offered = await run.offer_at_rate(rate, duration, 1000, tag=f"c{time.time_ns()}")
        await _drain(run, 30)
        await asyncio.sleep(1)  # the last wrap-ups
        node, red = cpu_s(node_pid) - before[0], cpu_s(redis_pid) - before[1]
        writes, reads = (b - a for a, b in zip(calls0, syscalls(node_pid), strict=True))
        switched = switches(node_pid) - switches0
        done = run.stats.completed - before[2]
        pg_figures = await _backends_used(pg, database, offered)
        idle0 = cpu_s(node_pid)
        await asyncio.sleep(idle_s)
        idle = (cpu_s(node_pid) - idle0) / idle_s
        return {"offered": offered, "completed": done, "node_ms": node * 1000 / offered,
                "redis_ms": red * 1000 / offered, "idle_pct": idle * 100,
                "writes": writes / offered, "reads": reads / offered,
                "switches": switched / offered,
                "errors": len(run.stats.errors), **pg_figures}


async def _backends(database: Any, node_pid: int) -> Any:
    if database is None:
        return None
    from pg_callcost import BackendCpu

    xacts, sessions = await database.transactions(), await _sessions(database)
    cpu = await BackendCpu(database, node_pid).__aenter__()
    return cpu, xacts, sessions


async def _sessions(database: Any) -> int:
    """Connections opened to the database so far (each a backend started)."""
    rows = await database.execute(
        "SELECT sessions FROM pg_stat_database WHERE datname = :d", d=database.name)
    return int(rows[0][0])


async def _backends_used(pg: Any, database: Any, offered: int) -> dict[str, float]:
    if pg is None:
        return {}
    cpu, xacts, sessions = pg
    await cpu.__aexit__()
    return {"pg_ms": cpu.used() * 1000 / offered,
            "pg_trips": cpu.round_trips() / offered,
            "pg_xacts": (await database.transactions() - xacts) / offered,
            "pg_connects": (await _sessions(database) - sessions) / offered}


async def loaded_statements(url: str, dep: Deployment, tokens: list[tuple[int, str]],
                            sql: SqlCount, rate: float, duration: float) -> Counter[str]:
    """Statements per call (by kind and table) and round trips at `rate`, the idle rate
    measured for 3 s before taken off."""
    async with LoadRun([url], tokens, dep.pbx_token, talk_s=0.5) as run:
        await asyncio.sleep(2)
        sql.take()
        await asyncio.sleep(3)
        idle = sql.take()
        t0 = time.perf_counter()
        offered = await run.offer_at_rate(rate, duration, 1000, tag=f"s{time.time_ns()}")
        await _drain(run, 30)
        await asyncio.sleep(1.5)  # the last wrap-ups and their writes
        seen = less_idle(sql.take(), idle, 3, time.perf_counter() - t0)
    return Counter({k: n / offered for k, n in seen.items()})


async def _drain(run: LoadRun, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(run.stats.popped) > run.stats.completed and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


_PREPARE = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[1] + "/bench")
from harness import Deployment
from pathlib import Path
dep = Deployment(Path(sys.argv[2]), sys.argv[3], None, secret_key=sys.argv[4])
tokens = asyncio.run(dep.prepare(int(sys.argv[5]), 1000))
print(json.dumps({"tokens": tokens, "pbx": dep.pbx_token}))
"""


async def prepare(tree: Path, dep: Deployment, agents: int) -> list[tuple[int, str]]:
    """Schema and data by the tree's own code: its migrations and models, not this one's."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _PREPARE, str(tree), str(dep.workdir), dep.database_url,
        dep.secret_key, str(agents), stdout=asyncio.subprocess.PIPE,
        env={**dep.env(), "PYTHONPATH": str(tree)})
    out, _ = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"preparing {tree} failed")
    made = json.loads(out.decode().strip().splitlines()[-1])
    dep.pbx_token = made["pbx"]
    return [(agent_id, token) for agent_id, token in made["tokens"]]


async def one(tree: Path, args: argparse.Namespace, redis_url: str, redis_pid: int,
              settings: dict[str, str]) -> dict:
    if args.postgres:
        return await one_postgres(tree, args, redis_url, redis_pid, settings)
    with workdir(None) as tmp:
        dep = Deployment(tmp, f"sqlite+aiosqlite:///{tmp / 'probe.db'}", redis_url)
        tokens = await prepare(tree, dep, args.agents)
        async with node(tree, dep, settings) as (url, pid):
            per, _ = await count_phase(url, redis_url, dep, tokens, args.calls)
            cpu = await cpu_phase(url, dep, tokens[1:], pid, redis_pid,
                                  args.rate, args.duration, args.idle)
    return {"per": per, **cpu}


async def one_postgres(tree: Path, args: argparse.Namespace, redis_url: str,
                       redis_pid: int, settings: dict[str, str]) -> dict:
    """The same on a database of its own (made by the tree's migrations, dropped after):
    a node with statement logging for the counts, then one without for the CPU."""
    from pg_callcost import Database

    with workdir(None) as tmp:
        async with Database("probe_cp", admin=args.postgres) as database:
            dep = Deployment(tmp, database.url, redis_url)
            tokens = await prepare(tree, dep, args.agents)
            await database.log_statements(True)
            async with node(tree, dep, settings) as (url, pid):
                sql = SqlCount(database.name, pid)
                per, per_sql = await count_phase(url, redis_url, dep, tokens, args.calls, sql)
                loaded = await loaded_statements(url, dep, tokens[1:], sql, args.rate,
                                                 args.duration / 2)
            await database.log_statements(False)
            await aioredis.from_url(redis_url).flushall()
            async with node(tree, dep, settings) as (url, pid):
                cpu = await cpu_phase(url, dep, tokens[1:], pid, redis_pid, args.rate,
                                      args.duration, args.idle, database)
    return {"per": per, "per_sql": per_sql, "loaded_sql": loaded, **cpu}


@contextlib.asynccontextmanager
async def node(tree: Path, dep: Deployment,
               settings: dict[str, str]) -> AsyncIterator[tuple[str, int]]:
    dep.procs.clear()
    url = dep.start_node(free_port(), PYTHONPATH=str(tree), CALLCENTER_WRAP_UP_S="30",
                         CALLCENTER_RING_TIMEOUT_S="30", **settings)
    try:
        await wait_healthy(url)
        yield url, dep.procs[0].pid
    finally:
        dep.stop()
        for log in dep.workdir.glob("node-*.log"):
            lines = log.read_text(errors="replace").splitlines()
            if lines:
                print(f"    {log.name} ({tree}), last lines:\n      "
                      + "\n      ".join(lines[-15:]))
            log.unlink()


def show(r: int, tree: Path, setting: str, res: dict, calls: int) -> None:
    per = {k: v["(round trips)"] / calls for k, v in res["per"].items()}
    print(f"round {r + 1} {tree} {setting} (load average {os.getloadavg()[0]:.1f}): "
          "round trips per event "
          + ", ".join(f"{k} {v:.1f}" for k, v in per.items())
          + f" (call {sum(per.values()):.1f}); CPU per call node "
          f"{res['node_ms']:.2f} ms, redis {res['redis_ms']:.2f} ms "
          + (f"postgres {res['pg_ms']:.2f} ms " if "pg_ms" in res else "")
          + f"({res['completed']}/{res['offered']} done, {res['errors']} errors); "
          f"idle {res['idle_pct']:.2f}% of a core; node system calls per call: "
          f"{res['writes']:.1f} writes, {res['reads']:.1f} reads; "
          f"{res['switches']:.0f} context switches", flush=True)
    if "pg_ms" in res:
        per_sql = {k: v["(round trips)"] / calls for k, v in res["per_sql"].items()}
        loaded = res["loaded_sql"]
        print("    postgres: round trips per event (one by one) "
              + ", ".join(f"{k} {v:.1f}" for k, v in per_sql.items())
              + f" (call {sum(per_sql.values()):.1f}); at the rate: round trips "
              f"{res['pg_trips']:.1f} per call (logging on: {loaded['(round trips)']:.1f}), "
              f"statements {_statements(loaded):.1f} per call, transactions "
              f"{res['pg_xacts']:.2f}, connections opened {res['pg_connects']:.3f}", flush=True)
    if r == 0:
        for k, v in res["per"].items():
            print(f"    {k}: " + ", ".join(
                f"{c} {n / calls:.1f}" for c, n in v.most_common()))
        for k, v in res.get("per_sql", {}).items():
            print(f"    {k} (sql): " + ", ".join(
                f"{c} {n / calls:.1f}" for c, n in v.most_common()))
        if "loaded_sql" in res:
            print("    statements per call at the rate: " + ", ".join(
                f"{c} {n:.2f}" for c, n in res["loaded_sql"].most_common() if n >= 0.05))


def _statements(seen: Counter[str]) -> float:
    return sum(n for k, n in seen.items() if not k.startswith("("))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, action="append", default=[])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--calls", type=int, default=5, help="calls in the count phase")
    parser.add_argument("--agents", type=int, default=101)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE,...")
    parser.add_argument("--postgres", metavar="ADMIN_URL",
                        help="run on PostgreSQL: a database per run, made and dropped "
                             "through this URL (e.g. postgresql+asyncpg://postgres@"
                             "127.0.0.1:5432/postgres)")
    args = parser.parse_args()
    variants = [(t.resolve(), s) for t in args.tree or [Path(".")] for s in args.setting or [""]]
    results: dict[tuple[Path, str], list[dict]] = {v: [] for v in variants}
    with workdir(None) as tmp, redis_server(tmp) as (redis_url, redis_pid):
        for r in range(args.rounds):
            for tree, setting in variants:
                env = dict(item.split("=", 1) for item in setting.split(",") if item)
                res = await one(tree, args, redis_url, redis_pid, env)
                results[(tree, setting)].append(res)
                show(r, tree, setting, res, args.calls)
                await aioredis.from_url(redis_url).flushall()
    print(f"\nmedians (load average {os.getloadavg()[0]:.1f}):")
    for (tree, setting), rs in results.items():
        def med(key: str, rs: list[dict] = rs) -> float:
            return statistics.median(r[key] for r in rs)
        pg = (f", postgres {med('pg_ms'):.2f} ms; postgres round trips "
              f"{med('pg_trips'):.1f}, statements "
              f"{statistics.median(_statements(r['loaded_sql']) for r in rs):.1f}, "
              f"transactions {med('pg_xacts'):.2f}, connections opened "
              f"{med('pg_connects'):.3f}") if args.postgres else ""
        print(f"  {tree} {setting}: node {med('node_ms'):.2f} ms, redis "
              f"{med('redis_ms'):.2f} ms per call{pg}; idle {med('idle_pct'):.2f}%; "
              f"write / read system calls {med('writes'):.1f} / {med('reads'):.1f} per "
              f"call, context switches {med('switches'):.0f}")


if __name__ == "__main__":
    asyncio.run(main())
