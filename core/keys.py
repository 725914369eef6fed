"""Every Redis key and channel name, in one place.

The prefix lets several deployments or test runs share one Redis.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "cc"

    # Agents: a hash per agent, and one sorted set per routing pool of available
    # agents, scored by the time they became idle (longest idle = lowest score).
    def agent(self, agent_id: int | str) -> str:
        return f"{self.prefix}:agent:{agent_id}"

    @property
    def agents(self) -> str:
        return f"{self.prefix}:agents"  # set of agent ids known to the live state

    def pool(self, name: str) -> str:
        return f"{self.prefix}:pool:{name}"

    # Beside each pool's available agents (routing/queue_index.py): the waiting calls
    # whose ring of that pool is open, scored by priority, and the rings not open yet,
    # scored by when they open. Pool names start with agent:, skill:, queue: or
    # complaints, so these names never meet a pool's; Lua scripts build them the same way.
    def pool_waiting(self, pool: str) -> str:
        return self.pool(f"waiting:{pool}")

    @property
    def ring_openings(self) -> str:
        return self.pool("openings")

    # The agents signed in to a pool, and those serving it (routing/staffing.py).
    def pool_staff(self, pool: str) -> str:
        return self.pool(f"staff:{pool}")

    def pool_serving(self, pool: str) -> str:
        return self.pool(f"serving:{pool}")

    # Calls: a hash per live call, one sorted set of waiting calls per queue.
    def call(self, call_id: str) -> str:
        return f"{self.prefix}:call:{call_id}"

    def erasing(self, customer_id: str) -> str:
        """Set while a customer is being erased: a call offered meanwhile is a new caller."""
        return f"{self.prefix}:erasing:{customer_id}"

    @property
    def calls(self) -> str:
        return f"{self.prefix}:calls"  # set of live call ids

    def waiting(self, queue: str) -> str:
        return f"{self.prefix}:waiting:{queue}"

    @property
    def queues(self) -> str:
        return f"{self.prefix}:queues"  # set of queue names with waiting calls

    # Queue callbacks (routing/callbacks.py) wait under their own ids among the calls
    # (`call`), so the index of waiting calls picks them; the pending ones, scored by when
    # they were requested:
    @property
    def callbacks(self) -> str:
        return f"{self.prefix}:callbacks"

    def event(self, event_id: str) -> str:
        return f"{self.prefix}:event:{event_id}"

    # PBX commands (cti/commands.py): a hash per command, the command a call has pending.
    def command(self, command_id: str) -> str:
        return f"{self.prefix}:cmd:{command_id}"

    def call_command(self, call_id: str) -> str:
        return f"{self.prefix}:cmdcall:{call_id}"

    def calls_commands(self, call_id: str) -> str:
        """Set of the commands sent about a call that may still be pending."""
        return f"{self.prefix}:cmdsof:{call_id}"

    def control_request(self, who: str, event_id: str) -> str:
        """A call-control request of a user by its event id: pending, then its answer
        (cti/once.py)."""
        return f"{self.prefix}:ctlreq:{who}:{event_id}"

    def monitor(self, call_id: str) -> str:
        """Who monitors a live call and how (cti/monitor.py)."""
        return f"{self.prefix}:monitor:{call_id}"

    # Timers shared by all nodes: member "kind|id|token", score = due time.
    @property
    def timers(self) -> str:
        return f"{self.prefix}:timers"

    def ws_ticket(self, ticket: str) -> str:
        return f"{self.prefix}:ticket:{ticket}"

    def recording_ticket(self, ticket: str) -> str:
        return f"{self.prefix}:recticket:{ticket}"

    def lock(self, name: str) -> str:
        return f"{self.prefix}:lock:{name}"

    @property
    def stats(self) -> str:
        return f"{self.prefix}:stats"

    def stats_day(self, day: str) -> str:
        return f"{self.prefix}:stats:{day}"

    def login_failures(self, who: str) -> str:
        return f"{self.prefix}:loginfail:{who}"

    def login_pending(self, who: str) -> str:
        """Sign-ins of `who` whose password is being checked (core/signin.py)."""
        return f"{self.prefix}:loginpend:{who}"

    def searches(self, who: str) -> str:
        """Customer searches in the current minute, per user (agent_console/views.py)."""
        return f"{self.prefix}:searches:{who}"

    @property
    def agent_log(self) -> str:
        """Stream of agent state changes, persisted to the database in batches."""
        return f"{self.prefix}:log:agent-states"

    @property
    def transcribe_stream(self) -> str:
        return f"{self.prefix}:jobs:transcribe"

    @property
    def webhook_events(self) -> str:
        """Stream of events for outbound webhooks, fanned out to deliveries by any node."""
        return f"{self.prefix}:webhooks:events"

    @property
    def webhooks_channel(self) -> str:
        """Words between the nodes' webhook loops (webhooks/service.py)."""
        return f"{self.prefix}:ch:webhooks"

    # Pub/sub channels for fan-out to whichever node holds the connection.
    def agent_channel(self, agent_id: int | str) -> str:
        return f"{self.prefix}:ch:agent:{agent_id}"

    def telephony_channel(self, integration: str) -> str:
        return f"{self.prefix}:ch:tel:{integration}"

    def command_channel(self, node_id: str) -> str:
        """Outcomes of the PBX commands a node sent (cti/commands.py)."""
        return f"{self.prefix}:ch:cmd:{node_id}"

    @property
    def wallboard_channel(self) -> str:
        return f"{self.prefix}:ch:wallboard"

    # Administration (admin/): every node reloads the center's configuration when a
    # message arrives here; the version counts the changes, so a node can tell whether
    # what it loaded is the latest.
    @property
    def admin_channel(self) -> str:
        return f"{self.prefix}:ch:admin"

    @property
    def config_version(self) -> str:
        return f"{self.prefix}:config:version"
