"""The live call path: apply telephony and agent events to calls, route, notify.

Each event is stored in the database before it is acknowledged, then applied to
the shared Redis state; what other connections must hear goes out over the bus.

`CallService` is the one object the edges hold; its parts, each in its own file:

- `cti/telephony.py`: the PBX's events, dispatched by frame type;
- `cti/agents.py`: an agent's lifecycle (state, wrap-up, console gone and back);
- `cti/timeouts.py`: ring-no-answer and widening rings, fired by timers;
- `cti/context.py`: what they share (dispatch to an agent, notices, observers);
- `cti/messages.py`: the protocol messages they build;
- `cti/agent_log.py`: the consumer that stores agent state changes for reports.
"""

from __future__ import annotations

from cti.agent_log import AgentLogConsumer
from cti.agents import AWAY, DISCONNECTED, away_timer
from cti.calls import FINAL
from cti.telephony import STORED, Applied, Outcome, TelephonyEvents
from cti.timeouts import CallTimeouts


class CallService(TelephonyEvents, CallTimeouts):
    def agent_log(self) -> AgentLogConsumer:
        return AgentLogConsumer(self.store.redis, self.keys.agent_log, self.writer, self.node_id)

    async def persist_agent_log(self, interval: float = 1.0, batch: int = 500) -> None:
        """Run the agent-log consumer (see cti/agent_log.py) until cancelled."""
        await self.agent_log().run(interval, batch)


__all__ = ["AWAY", "DISCONNECTED", "FINAL", "STORED", "Applied", "CallService", "Outcome",
           "away_timer"]
