"""The event loop's lag while 200 users sign in at once, this tree against an old one.

For each tree, one `callcenter serve` process on the embedded defaults (SQLite + embedded
Redis) with a few agents taking a steady stream of calls. This process probes `/healthz`
(loop, Redis and database) and `/login` (a page served from memory: the loop alone)
every 20 ms and times each screen-pop, first with nobody signing in ("quiet"), then
while 200 other users sign in at once, each from its own address (as 200 desks would);
a sign-in answered 503 retries after its Retry-After. The old tree is the baseline,
measured in the same run, alternated with this one when `--repeat` is above 1.

    .venv/bin/python bench/signin_bench.py                  # baseline: commit d55503f
    .venv/bin/python bench/signin_bench.py --repeat 2 --users 200

The baseline tree is a git worktree (`git worktree add --detach /tmp/signin-base d55503f`,
made when missing); its node runs with PYTHONPATH pointing at it.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    ROOT,
    Deployment,
    LoadRun,
    free_port,
    percentile,
    split_held,
    wait_healthy,
    workdir,
)

PASSWORD = "bench-password"  # harness.Deployment.prepare gives every user this one
PROBE_S = 0.02


@dataclass
class Window:
    health: list[float] = field(default_factory=list)  # /healthz: loop, Redis and database
    page: list[float] = field(default_factory=list)  # /login, served from memory: the loop
    pops: list[float] = field(default_factory=list)
    signins: list[float] = field(default_factory=list)
    busy: int = 0  # 503 answers (retried)
    answers: Counter[int] = field(default_factory=Counter)  # final status of each sign-in
    took_s: float = 0.0


async def probe(url: str, out: list[float], stop: asyncio.Event) -> None:
    """GET `url` every 20 ms (or as soon as the last one answered, if later)."""
    async with aiohttp.ClientSession() as http:
        next_at = time.perf_counter()
        while not stop.is_set():
            started = time.perf_counter()
            async with http.get(url) as response:
                await response.read()
            out.append(time.perf_counter() - started)
            next_at += PROBE_S
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))


async def sign_in(url: str, n: int, username: str, window: Window) -> None:
    address = f"127.0.{10 + n // 250}.{1 + n % 250}"
    started = time.perf_counter()
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        while True:
            async with http.post(f"{url}/api/v1/login",
                                 json={"username": username, "password": PASSWORD}) as r:
                await r.read()
                if r.status != 503:
                    break
                window.busy += 1
                await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
    window.answers[r.status] += 1
    window.signins.append(time.perf_counter() - started)


async def measure(url: str, run: LoadRun, users: list[str], args: argparse.Namespace,
                  ) -> dict[str, Window]:
    windows = {"quiet": Window(), "flood": Window()}
    for name, window in windows.items():
        stop = asyncio.Event()
        mark = len(run.stats.pop_latency)
        probers = [asyncio.create_task(probe(f"{url}/healthz", window.health, stop)),
                   asyncio.create_task(probe(f"{url}/login", window.page, stop))]
        offers = asyncio.create_task(run.offer_at_rate(args.rate, 3600, args.customers,
                                                       tag=f"{name}{time.monotonic_ns()}"))
        started = time.perf_counter()
        if name == "quiet":
            await asyncio.sleep(args.quiet)
        else:
            await asyncio.gather(*(sign_in(url, n, user, window)
                                   for n, user in enumerate(users)))
        window.took_s = time.perf_counter() - started
        offers.cancel()
        stop.set()
        await asyncio.gather(*probers, offers, return_exceptions=True)
        await asyncio.sleep(1)  # the last pops arrive
        window.pops = split_held([s for _, s in run.stats.pop_latency[mark:]],
                                 run.stats.held[mark:])[0]
    return windows


async def one_node(tree: Path, label: str, args: argparse.Namespace) -> dict[str, Window]:
    with workdir(None) as tmp:
        deployment = Deployment(tmp, f"sqlite+aiosqlite:///{tmp / 'bench.db'}", None)
        tokens = await deployment.prepare(args.agents + args.users, args.customers)
        url = deployment.start_node(free_port(), PYTHONPATH=str(tree),
                                    CALLCENTER_RING_TIMEOUT_S="30", CALLCENTER_WRAP_UP_S="1")
        try:
            await wait_healthy(url)
            async with LoadRun([url], tokens[:args.agents], deployment.pbx_token,
                               talk_s=args.talk) as run:
                await asyncio.sleep(2)  # every agent available
                users = [f"a{n}" for n in range(args.agents, args.agents + args.users)]
                windows = await measure(url, run, users, args)
        finally:
            deployment.stop()
    report(label, windows)
    return windows


def ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p) * 1000:.1f}"


def spread(what: str, values: list[float]) -> str:
    return (f"{what} p50 {ms(values, 50)} p99 {ms(values, 99)} max "
            f"{max(values, default=0) * 1000:.1f} ms ({len(values)})")


def report(label: str, windows: dict[str, Window]) -> None:
    for name, w in windows.items():
        line = (f"  {label:>8} {name:>5}: {spread('/healthz', w.health)}; "
                f"{spread('/login page', w.page)}; {spread('screen-pop', w.pops)}")
        if name == "flood":
            line += (f"; {len(w.signins)} sign-ins in {w.took_s:.1f} s (each p50 "
                     f"{ms(w.signins, 50)} ms, max {max(w.signins) * 1000:.0f} ms), "
                     f"{w.busy} answered 503 and retried; final answers "
                     f"{dict(sorted(w.answers.items()))}")
        print(line, flush=True)


def baseline_tree(path: Path, commit: str) -> Path:
    if not (path / "callcenter").is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path),
                        commit], check=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200, help="signing in at once")
    parser.add_argument("--agents", type=int, default=20, help="taking calls meanwhile")
    parser.add_argument("--rate", type=float, default=10.0, help="calls offered per second")
    parser.add_argument("--talk", type=float, default=1.0, help="mean talk time, seconds")
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--quiet", type=float, default=10.0, help="seconds measured before")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--baseline", default="d55503f", help="the old commit")
    parser.add_argument("--baseline-tree", type=Path, default=Path("/tmp/signin-base"))
    args = parser.parse_args()
    old = baseline_tree(args.baseline_tree, args.baseline)
    print(f"{args.users} users sign in at once; {args.agents} agents take {args.rate:g} "
          f"calls/s; /healthz probed every {PROBE_S * 1000:.0f} ms")
    for _ in range(args.repeat):
        asyncio.run(one_node(old, f"old {args.baseline}", args))
        asyncio.run(one_node(ROOT, "new", args))


if __name__ == "__main__":
    main()
