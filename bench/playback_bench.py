"""Recording playback for quality evaluations: what a seek costs (docs/quality.md).

    .venv/bin/python bench/playback_bench.py [--seeks 400] [--concurrency 8] [--mb 20]

Starts one node (`callcenter serve`, SQLite, embedded Redis) with a `--mb` MB WAV in
its recordings directory, gets a ticket as a supervisor, then sends `--seeks` range
requests of 64 KiB at random offsets (what an audio element asks for after a seek),
`--concurrency` at a time, each checking the ticket in Redis, the signed-in token and
the right to hear the call in the database. Prints latency percentiles, requests per
second and the node's RSS before and after (the file is streamed, never read whole).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import struct
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Deployment, free_port, percentile, rss_mb, wait_healthy, workdir

from core import db
from core.auth import issue_token
from core.models import Agent, Interaction, Role

CHUNK = 64 * 1024


def write_wav(path: Path, megabytes: int) -> int:
    data = megabytes * 1024 * 1024
    with path.open("wb") as f:
        f.write(b"RIFF" + struct.pack("<I", data + 36) + b"WAVE" + b"fmt "
                + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
                + b"data" + struct.pack("<I", data))
        f.write(random.randbytes(data))
    return data + 44


async def seed(deployment: Deployment) -> tuple[str, int]:
    await deployment.prepare(agents=1, customers=0)
    maker = db.sessionmaker(db.create_engine(deployment.database_url))
    async with db.session_scope(maker) as session:
        sue = Agent(username="sue", password_hash="x", role="supervisor")
        call = Interaction(call_id="bench-1", agent_id=1, recording_path="bench.wav",
                           outcome="answered")
        session.add_all([sue, call])
        await session.flush()
        token = await issue_token(session, deployment.secret_key, role=Role.supervisor,
                                  name="sue", agent_id=sue.id, ttl=dt.timedelta(hours=1))
        return token, call.id


async def seeks(url: str, size: int, count: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as http:
        async def one() -> None:
            start = random.randrange(0, size - CHUNK)
            async with gate:
                began = time.perf_counter()
                wanted = {"Range": f"bytes={start}-{start + CHUNK - 1}"}
                async with http.get(url, headers=wanted) as r:
                    body = await r.read()
                    assert r.status == 206 and len(body) == CHUNK, (r.status, len(body))
                latencies.append(time.perf_counter() - began)
        await asyncio.gather(*(one() for _ in range(count)))
    return latencies


async def main(args: argparse.Namespace) -> None:
    with workdir(None) as tmp:
        recordings = tmp / "recordings"
        recordings.mkdir()
        size = write_wav(recordings / "bench.wav", args.mb)
        deployment = Deployment(tmp, f"sqlite+aiosqlite:///{tmp / 'bench.db'}", None)
        token, call = await seed(deployment)
        node = deployment.start_node(free_port(), CALLCENTER_RECORDINGS_DIR=str(recordings))
        try:
            await wait_healthy(node)
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{node}/api/v1/quality/calls/{call}/recording-ticket",
                                     headers={"Authorization": f"Bearer {token}"}) as r:
                    ticket = await r.json()
            pid = deployment.procs[0].pid
            before = rss_mb(pid)
            began = time.perf_counter()
            latencies = await seeks(node + ticket["url"], size, args.seeks, args.concurrency)
            took = time.perf_counter() - began
            print(f"{args.seeks} range requests of 64 KiB at random offsets of a {args.mb} MB "
                  f"recording, {args.concurrency} at a time: {args.seeks / took:.0f}/s; "
                  f"p50 {percentile(latencies, 50) * 1000:.1f} ms, "
                  f"p95 {percentile(latencies, 95) * 1000:.1f} ms, "
                  f"max {max(latencies) * 1000:.1f} ms; node RSS {before:.0f} -> "
                  f"{rss_mb(pid):.0f} MB")
        finally:
            deployment.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeks", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--mb", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
