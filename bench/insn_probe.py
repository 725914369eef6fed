"""Instructions per whole call, counted by callgrind: a figure the host's load cannot blur.

CPU time per call on this shared host swings more between runs than the effects issue 23
asks for (bench/README.md, "Round trips and CPU per whole call", "Several nodes").
Callgrind counts the instructions a process executes, the same total for the same code
and inputs whatever else the machine does. So each node (`callcenter serve`, the tree
first on its PYTHONPATH) and the redis-server run under valgrind's callgrind
(bench/callgrind.py), started uninstrumented; the probe drives consoles and a PBX over
websockets from outside valgrind, waiting on acks and frames (never sleeping between
steps):

1. the tree's own `bench/harness.py` makes the schema (its migrations), 1,000
   customers, the agents and the PBX token (as bench/callpath_probe.py does);
2. the agents sign in (round-robin over the nodes; one PBX connection per node) and
   `--warmup` whole calls run uninstrumented (connections, statement caches, scripts);
3. instrumentation is switched on in every process (`callgrind_control -i on`), the
   counts zeroed, and `--idle` seconds pass with no call: the idle loops' instructions
   per second;
4. `--calls` whole calls, `--concurrency` at a time: offer (ack, `route.connect`, the
   agent's `screen_pop`), answer (ack, `call.connected`), end (ack, `call.ended`),
   `wrapup.done` (the agent `available` again); each call's caller is a customer of its
   own (no returning caller held for a busy agent). `--settle` seconds after the last
   one for writes that follow it; then the counts are dumped.

Per call: the call phase's instructions less the idle rate times its wall time, over the
calls (and, in the table, the raw figure). Under valgrind a node runs 20-100x slower, so
the idle loops (timer poll, heartbeats, stream reads: per wall second) weigh that much
more per call than at full speed: that is why they are measured and taken off. Loops
that work only while calls come (the wallboard's count flush) are not: they stay in the
per-call figure, heavier than at full speed. With `--concurrency 8` the node is saturated
under valgrind, so events share loop turns, pipelines and writer batches as near a
node's knee.

Settings for the run (`PROBE_SETTINGS`): the bounds valgrind's slowdown could trip are
raised (a console's sign-in, a ring, a wrap-up, the consoles' presence lease). Not
settings, so left as they are: redis-py's 5 s socket timeout (the call path's pipe reads
the same bound), the health check's 2-3 s, the websockets' 20 s heartbeat; a node's
warnings and errors are counted in the output (`complaints`), and any error frame fails
the run.

    git worktree add --detach /tmp/insn-old c2c5d65
    .venv/bin/python bench/insn_probe.py --tree /tmp/insn-old --tree . --rounds 2
    .venv/bin/python bench/insn_probe.py --nodes 1 --nodes 2 --rounds 2
    .venv/bin/python bench/insn_probe.py --postgres \
        postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

Variants (each tree with each node count) run A B B A over the rounds. Redis runs under
callgrind too (its instructions, summed over both nodes' work); `--redis-plain` runs it
natively and reports its CPU time per call instead. PostgreSQL's backends are not
counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import sysconfig
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from callgrind import Callgrind  # noqa: E402
from callpath_probe import prepare, syscalls  # noqa: E402
from harness import Deployment, cpu_s, free_port, phone, wait_healthy, workdir  # noqa: E402
from multinode_bench import redis_server as plain_redis  # noqa: E402

PROBE_SETTINGS = {
    "CALLCENTER_WS_AUTH_TIMEOUT_S": "600",
    "CALLCENTER_RING_TIMEOUT_S": "600",
    "CALLCENTER_WRAP_UP_S": "600",
    "CALLCENTER_AGENT_AWAY_S": "600",
}
STEP_S = 300.0  # bound on one step of a call (its frames awaited)
START_S = 900.0  # bound on a node's start under valgrind
CUSTOMERS = 1000  # made by the tree's harness
_CALL_FRAMES = {"ack", "route.connect", "screen_pop", "call.connected", "call.ended"}


class Frames:
    """The frames of one websocket, each handed to whoever expects it: an `ack` by its
    event id, a call's frames by call id, an `agent.state` by state (expected before the
    frame that causes it is sent: a state frame arriving unexpected is dropped)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.waiting: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self.early: dict[tuple[str, str], dict[str, Any]] = {}
        self.error: Exception | None = None
        self.task = asyncio.create_task(self._read())

    def expect(self, kind: str, key: str) -> asyncio.Future[dict[str, Any]]:
        future = asyncio.get_running_loop().create_future()
        if self.error:
            future.set_exception(self.error)
        elif (kind, key) in self.early:
            future.set_result(self.early.pop((kind, key)))
        else:
            self.waiting[(kind, key)] = future
        return future

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self._hand(json.loads(msg.data))
        self._fail(RuntimeError(f"websocket closed ({self.ws.close_code})"))

    def _hand(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type", "")
        if kind == "error":
            self._fail(RuntimeError(f"error frame: {frame}"))
            return
        field = {"ack": "event_id", "agent.state": "state"}.get(kind, "call_id")
        key = (kind, str(frame.get(field)))
        future = self.waiting.pop(key, None)
        if future is not None:
            if not future.done():
                future.set_result(frame)
        elif kind in _CALL_FRAMES:
            self.early[key] = frame

    def _fail(self, error: Exception) -> None:
        self.error = self.error or error
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(error)
        self.waiting.clear()


async def _all(*futures: asyncio.Future[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(await asyncio.wait_for(asyncio.gather(*futures), STEP_S))


class Center:
    """Consoles (round-robin over the nodes) and a PBX connection per node, and whole
    calls made through them; call `n` is offered on PBX connection `n % nodes`."""

    def __init__(self, urls: list[str], agents: list[tuple[int, str]], pbx_token: str) -> None:
        self.urls, self.agents, self.pbx_token = urls, agents, pbx_token

    async def __aenter__(self) -> Center:
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                          timeout=aiohttp.ClientTimeout(total=START_S))
        self.consoles: dict[int, Frames] = {}
        for n, (agent_id, token) in enumerate(self.agents):
            console = await self._connect(self.urls[n % len(self.urls)], "agent", token)
            ready = console.expect("agent.state", "available")
            await console.send({"type": "agent.state.set", "state": "available"})
            await _all(ready)
            self.consoles[agent_id] = console
        self.pbxs = [await self._connect(url, "telephony", self.pbx_token) for url in self.urls]
        return self

    async def _connect(self, url: str, kind: str, token: str) -> Frames:
        ws = await self.http.ws_connect(f"{url}/ws/{kind}",
                                        headers={"Authorization": f"Bearer {token}"})
        return Frames(ws)

    async def __aexit__(self, *exc: object) -> None:
        for frames in [*self.consoles.values(), *self.pbxs]:
            await frames.ws.close()
            frames.task.cancel()
        await self.http.close()

    async def call(self, n: int, call_id: str) -> None:
        pbx = self.pbxs[n % len(self.pbxs)]
        _, routed = await self._event(pbx, "o", {
            "type": "call.offered", "call_id": call_id, "ani": phone(n % CUSTOMERS),
            "queue": "default"}, pbx.expect("route.connect", call_id))
        console = self.consoles[routed["agent_id"]]
        await _all(console.expect("screen_pop", call_id))
        await self._event(pbx, "a", {"type": "call.answered", "call_id": call_id,
                                     "agent_id": routed["agent_id"]},
                          console.expect("call.connected", call_id))
        await self._event(pbx, "e", {"type": "call.ended", "call_id": call_id,
                                     "cause": "normal"},
                          console.expect("call.ended", call_id))
        ready = console.expect("agent.state", "available")
        await console.send({"type": "wrapup.done", "call_id": call_id,
                            "disposition": "resolved"})
        await _all(ready)

    async def _event(self, pbx: Frames, tag: str, frame: dict[str, Any],
                     *also: asyncio.Future[dict[str, Any]]) -> list[dict[str, Any]]:
        """A PBX event, its ack and the frames it causes."""
        event_id = f"{tag}-{frame['call_id']}"
        ack = pbx.expect("ack", event_id)
        await pbx.send({**frame, "event_id": event_id})
        return await _all(ack, *also)

    async def run(self, first: int, count: int, concurrency: int, tag: str) -> None:
        """Calls `first`..`first + count - 1`, `concurrency` of them at a time."""
        numbers = iter(range(first, first + count))

        async def line() -> None:
            for n in numbers:
                await self.call(n, f"{tag}-{n}")

        await asyncio.gather(*(line() for _ in range(concurrency)))


@contextlib.asynccontextmanager
async def database(args: argparse.Namespace, tmp: Path) -> AsyncIterator[str]:
    if not args.postgres:
        yield f"sqlite+aiosqlite:///{tmp / 'probe.db'}"
        return
    from pg_callcost import Database

    async with Database("probe_insn", admin=args.postgres) as made:
        yield made.url


@contextlib.contextmanager
def redis(tmp: Path, plain: bool) -> Iterator[tuple[str, Callgrind | None, int]]:
    """A redis-server under callgrind (or not): its URL, its Callgrind, its pid."""
    if plain:
        with plain_redis(tmp) as (url, pid):
            yield url, None, pid
        return
    port = free_port()
    server = Callgrind([shutil.which("redis-server") or "redis-server", "--port", str(port),
                        "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                        "--dir", str(tmp)], tmp / "redis.cg", tmp / "redis.log")
    try:
        yield f"redis://127.0.0.1:{port}/0", server, server.pid
    finally:
        server.stop()


async def wait_port(url: str, server: Callgrind | None, timeout: float = 120) -> None:
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            return
        if time.monotonic() > deadline or (server and server.proc.poll() is not None):
            raise RuntimeError(f"redis-server at {url} did not start")
        await asyncio.sleep(0.2)


def start_node(tree: Path, dep: Deployment, i: int, settings: dict[str, str],
               ) -> tuple[str, Callgrind]:
    port = free_port()
    # Under valgrind the interpreter may not find the venv it is run from: its packages
    # are put on the path after the tree. A fixed hash seed: the same dicts each run.
    path = os.pathsep.join([str(tree), sysconfig.get_paths()["purelib"]])
    env = dep.env(PYTHONPATH=path, PYTHONHASHSEED="0", **PROBE_SETTINGS, **settings)
    node = Callgrind([sys.executable, "-m", "callcenter", "serve", "--port", str(port)],
                     dep.workdir / f"node{i}.cg", dep.workdir / f"node{i}.log",
                     env=env, cwd=dep.workdir)
    return f"http://127.0.0.1:{port}", node


async def measure(center: Center, nodes: list[Callgrind], server: Callgrind | None,
                  args: argparse.Namespace, redis_pid: int) -> dict[str, Any]:
    """Idle instructions, then the call phase's, per process (the nodes', then Redis's),
    and the nodes' system calls in the call phase (their kernel side, which callgrind
    does not count), the idle rate of each taken off as well."""
    counted = [*nodes, *([server] if server else [])]
    await center.run(0, args.warmup, args.concurrency, "w")
    await asyncio.gather(*(p.instrument(True) for p in counted))
    await asyncio.gather(*(p.zero() for p in counted))
    t0, idle_io = time.monotonic(), _io(nodes)
    await asyncio.sleep(args.idle)
    idle = await asyncio.gather(*(p.dump() for p in counted))
    t1, cpu0, io0 = time.monotonic(), cpu_s(redis_pid), _io(nodes)
    idle_s = t1 - t0
    idle_w, idle_r = ((b - a) / idle_s for a, b in zip(idle_io, io0, strict=True))
    await center.run(args.warmup, args.calls, args.concurrency, "c")
    await asyncio.sleep(args.settle)
    io1 = _io(nodes)
    busy = await asyncio.gather(*(p.dump() for p in counted))
    kept = [keep(p, args) for p in counted]
    calls_s = time.monotonic() - t1  # both windows: from one answer of the processes to the next
    await asyncio.gather(*(p.instrument(False) for p in counted))
    return {"idle_s": idle_s, "calls_s": calls_s, "idle_ir": idle, "calls_ir": busy,
            "redis_cpu_ms": (cpu_s(redis_pid) - cpu0) * 1000 / args.calls,
            "writes": (io1[0] - io0[0] - idle_w * calls_s) / args.calls,
            "reads": (io1[1] - io0[1] - idle_r * calls_s) / args.calls,
            "raw_writes": (io1[0] - io0[0]) / args.calls,
            "raw_reads": (io1[1] - io0[1]) / args.calls, "kept": kept}


def keep(process: Callgrind, args: argparse.Namespace) -> str | None:
    """With `--keep DIR`, the call phase's dump copied there (for callgrind_annotate)."""
    if not args.keep:
        return None
    args.keep.mkdir(parents=True, exist_ok=True)
    target = args.keep / f"{time.strftime('%H%M%S')}-{process.out.stem}-{process.pid}.cg"
    shutil.copyfile(process.last, target)
    return str(target)


def _io(nodes: list[Callgrind]) -> tuple[int, int]:
    """The nodes' write and read system calls so far (valgrind's own, with
    `--fair-sched=yes`, are none between two dumps)."""
    done = [syscalls(node.pid) for node in nodes]
    return sum(w for w, _ in done), sum(r for _, r in done)


async def one(tree: Path, nodes: int, args: argparse.Namespace,
              settings: dict[str, str]) -> dict[str, Any]:
    with workdir(None) as tmp, redis(tmp, args.redis_plain) as (redis_url, server, pid):
        await wait_port(redis_url, server)
        async with database(args, tmp) as url:
            dep = Deployment(tmp, url, redis_url)
            agents = await prepare(tree, dep, args.concurrency + 2)
            started = [start_node(tree, dep, i, settings) for i in range(nodes)]
            try:
                for node_url, _ in started:
                    await wait_healthy(node_url, START_S)
                urls = [node_url for node_url, _ in started]
                async with Center(urls, agents, dep.pbx_token) as center:
                    res = await measure(center, [node for _, node in started], server,
                                        args, pid)
            except BaseException:
                for _, node in started:
                    tail = node.log.read_text(errors="replace").splitlines()[-20:]
                    print(f"    {node.log.name}, last lines:\n      " + "\n      ".join(tail))
                raise
            finally:
                for _, node in started:
                    node.stop()
                complaints = [line for _, node in started for line in node.complaints()]
                if complaints:
                    print(f"    node complaints ({len(complaints)}), last ones:\n      "
                          + "\n      ".join(complaints[-10:]), flush=True)
    return {"tree": str(tree), "nodes": nodes, "calls": args.calls,
            "concurrency": args.concurrency, "redis_callgrind": server is not None,
            "complaints": len(complaints), **res, **figures(res, nodes, args.calls)}


def figures(res: dict[str, Any], nodes: int, calls: int) -> dict[str, float]:
    """Per call: the call phase's instructions less the idle rate times its wall time."""
    out: dict[str, float] = {}
    parts = {"node": slice(0, nodes), "redis": slice(nodes, None)}
    for name, part in parts.items():
        idle, busy = sum(res["idle_ir"][part]), sum(res["calls_ir"][part])
        rate = idle / res["idle_s"]
        out[f"{name}_idle_per_s"] = rate
        out[f"{name}_raw_per_call"] = busy / calls
        out[f"{name}_per_call"] = (busy - rate * res["calls_s"]) / calls
    out["per_call"] = out["node_per_call"] + out["redis_per_call"]
    return out


def show(res: dict[str, Any]) -> None:
    redis = (f"{res['redis_per_call'] / 1e6:.2f}" if res["redis_callgrind"]
             else f"({res['redis_cpu_ms']:.2f} ms CPU)")
    print(f"| {res['round']} | {res['tree']} | {res['nodes']} | {res['calls']} "
          f"({res['concurrency']}) | {res['calls_s']:.0f} | "
          f"{res['node_raw_per_call'] / 1e6:.2f} | {res['node_idle_per_s'] / 1e6:.2f} | "
          f"{res['node_per_call'] / 1e6:.2f} | {redis} | {res['per_call'] / 1e6:.2f} | "
          f"{res['writes']:.1f} / {res['reads']:.1f} | {res['complaints']} | "
          f"(load average {os.getloadavg()[0]:.1f})", flush=True)


HEADER = ("| round | tree | nodes | calls (concurrency) | call phase, s | node M Ir per call, "
          "raw | node idle M Ir per s | node M Ir per call | Redis M Ir per call | "
          "node + Redis M Ir per call | node write / read system calls per call | "
          "node complaints |\n|" + "---|" * 12)


def summary(results: list[dict[str, Any]], rate: float) -> None:
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for res in results:
        groups.setdefault((res["tree"], res["nodes"]), []).append(res)
    med = {k: statistics.median(r["per_call"] for r in rs) for k, rs in groups.items()}
    print("\nmedians, node + Redis instructions per whole call (idle taken off; with the "
          f"idle loops' share at {rate:g} calls/s):")
    for (tree, nodes), rs in groups.items():
        idle = statistics.median(r["node_idle_per_s"] + r["redis_idle_per_s"] for r in rs)
        print(f"  {tree}, {nodes} node(s): {med[(tree, nodes)] / 1e6:.2f} M "
              f"({(med[(tree, nodes)] + idle / rate) / 1e6:.2f} M with idle; idle "
              f"{idle / 1e6:.2f} M per s)")
    trees = list(dict.fromkeys(t for t, _ in groups))
    for (tree, nodes), value in med.items():
        if tree != trees[0] and (trees[0], nodes) in med:
            print(f"  {trees[0]} / {tree}, {nodes} node(s): "
                  f"x{med[(trees[0], nodes)] / value:.2f}")
        if nodes > 1 and (tree, 1) in med:
            print(f"  {tree}: {nodes} nodes / 1 node: x{value / med[(tree, 1)]:.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, action="append", default=[],
                        help="a source tree to run the nodes from (the first is the "
                             "reference of the ratios); default: this one")
    parser.add_argument("--nodes", type=int, action="append", default=[])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=16, help="uncounted calls first")
    parser.add_argument("--idle", type=float, default=15.0, help="seconds counted idle")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds counted after the last call")
    parser.add_argument("--rate", type=float, default=30.0,
                        help="calls/s at which the idle loops' share is shown")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a node setting for every run")
    parser.add_argument("--postgres", metavar="ADMIN_URL",
                        help="a PostgreSQL database per run, made and dropped through "
                             "this URL (default: a SQLite file)")
    parser.add_argument("--redis-plain", action="store_true",
                        help="Redis outside valgrind: its CPU time per call instead")
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep each process's call-phase dump here (callgrind_annotate)")
    args = parser.parse_args()
    if args.warmup + args.calls > CUSTOMERS:
        parser.error(f"at most {CUSTOMERS} calls with the warm-up (a customer each)")
    settings = dict(item.split("=", 1) for item in args.setting)
    variants = [(t.resolve(), n) for t in args.tree or [Path(".")] for n in args.nodes or [1]]
    results: list[dict[str, Any]] = []
    print(HEADER, flush=True)
    for r in range(args.rounds):
        for tree, nodes in variants if r % 2 == 0 else variants[::-1]:  # A B B A
            res = {"round": r + 1, **await one(tree, nodes, args, settings)}
            show(res)
            results.append(res)
    summary(results, args.rate)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
