"""The live demo center: the demo PBX offers calls at a steady rate and simulated
colleagues take them, against this node's own websockets, so the wallboard moves within
seconds of `callcenter serve --demo`. Two demo agents are left for people to sign in as
(`agent1`, `agent2`): their phone is played by the demo PBX too, and obeys the console's
call controls (answer, hold, resume, hang up), so a person sees the screen-pop, takes the
call, and wraps up."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import db
from core.auth import issue_token
from core.models import Agent, Role
from demo.callers import Caller, load_callers, plan_call
from demo.colleagues import Colleague
from demo.pbx import DemoPbx
from demo.speech import DemoRecorder

log = logging.getLogger(__name__)

PEOPLE = ("agent1", "agent2")  # demo sign-ins left for a person
TOKEN_TTL = dt.timedelta(days=7)


@dataclass
class DemoCenter:
    maker: async_sessionmaker[AsyncSession]
    secret_key: str
    url: str
    calls_per_min: float
    recordings: Path
    recordings_root: Path | None = None
    seed: int | None = None
    scale: float = 1.0  # times of talk, wrap-up and patience (tests run faster)
    rng: random.Random = field(init=False)
    pbx: DemoPbx | None = field(default=None, init=False)
    colleagues: list[Colleague] = field(default_factory=list, init=False)
    _calls: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    _offering: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._offering.set()

    @property
    def integration(self) -> str:
        """The demo PBX's integration, this node's own (its host and port, the same after
        a restart): it ends that integration's calls left from before a restart, never
        another demo node's on the same Redis."""
        return f"demo-pbx@{socket.gethostname()}:{urlsplit(self.url).port}"

    def pause(self) -> None:
        """No new calls; those under way play to the end."""
        self._offering.clear()

    async def run(self) -> None:
        await self._until_serving()
        pbx_token, agents, people = await self._tokens()
        recorder = DemoRecorder(self.recordings, self.rng, self.recordings_root)
        self.pbx = DemoPbx(self.url, pbx_token, self.rng, recorder, self.scale, people)
        self.colleagues = [Colleague(self.url, token, agent_id, self.rng, self.scale)
                           for agent_id, token in agents]
        callers = await load_callers(self.maker)
        log.info("demo traffic: %.0f calls a minute from %d callers, %d simulated "
                 "colleagues; %s are yours to sign in as", self.calls_per_min, len(callers),
                 len(self.colleagues), ", ".join(PEOPLE))
        async with aiohttp.ClientSession() as http:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.pbx.run(http))
                for colleague in self.colleagues:
                    group.create_task(colleague.run(http))
                group.create_task(self._offer(callers))

    async def _offer(self, callers: list[Caller]) -> None:
        assert self.pbx is not None
        rate_per_s = self.calls_per_min / 60
        for n in range(1_000_000_000):
            await self._offering.wait()
            task = asyncio.create_task(self.pbx.play(plan_call(self.rng, n, callers,
                                                                        self.scale)))
            self._calls.add(task)
            task.add_done_callback(self._call_done)
            await asyncio.sleep(self.rng.expovariate(rate_per_s))

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._calls.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a demo call failed", exc_info=task.exception())

    async def _until_serving(self) -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"{self.url}/healthz") as reply:
                        if reply.status == 200:
                            return
                except (aiohttp.ClientError, OSError):
                    pass
                await asyncio.sleep(0.2)

    async def _tokens(self) -> tuple[str, list[tuple[int, str]], frozenset[int]]:
        """The PBX's token, the simulated colleagues' (agent id, token), the people's ids."""
        async with db.session_scope(self.maker) as session:
            pbx = await issue_token(session, self.secret_key, role=Role.telephony,
                                    name=self.integration, ttl=TOKEN_TTL)
            rows = (await session.execute(
                select(Agent.id, Agent.username).where(Agent.role == Role.agent.value,
                                                       Agent.active.is_(True))
                .order_by(Agent.id))).all()
            agents = [(agent_id, await issue_token(session, self.secret_key, role=Role.agent,
                                                   name=username, agent_id=agent_id,
                                                   ttl=TOKEN_TTL))
                      for agent_id, username in rows if username not in PEOPLE]
        people = frozenset(agent_id for agent_id, username in rows if username in PEOPLE)
        return pbx, agents, people

    async def stop(self) -> None:
        for task in list(self._calls):
            task.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)
        for person in [self.pbx, *self.colleagues]:
            if person is not None:
                await person.background.cancel()
