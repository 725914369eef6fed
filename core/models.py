"""The system of record: SQLAlchemy 2 models shared by every package.

Live routing state lives in Redis; these tables hold what must survive any
node: customers and their value, agents, calls and their interaction records,
complaints and the audit trail. Schema changes go through Alembic
(``core/migrations``).
"""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC) if value is not None else None

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


Money = Numeric(14, 2, asdecimal=False)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Role(str, Enum):
    agent = "agent"
    supervisor = "supervisor"
    admin = "admin"
    telephony = "telephony"


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    company: Mapped[str | None] = mapped_column(String(200))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    lifecycle_stage: Mapped[str] = mapped_column(String(20), default="prospect")
    # Value model output, recomputed by `callcenter segment`.
    tier: Mapped[str] = mapped_column(String(16), default="standard", index=True)
    abc_class: Mapped[str | None] = mapped_column(String(1))
    rfm_score: Mapped[str | None] = mapped_column(String(3))
    rfm_segment: Mapped[str | None] = mapped_column(String(32))
    clv: Mapped[float | None] = mapped_column(Money)
    clv_class: Mapped[str | None] = mapped_column(String(16))
    churn_risk: Mapped[float | None] = mapped_column(Float)
    value_updated_at: Mapped[dt.datetime | None]
    # Value policy measures (crm/value_policy.yaml, docs/value-model.md).
    current_value: Mapped[float | None] = mapped_column(Money)
    service_cost: Mapped[float | None] = mapped_column(Money)
    value_cost_type: Mapped[str | None] = mapped_column(String(24))
    relationship_days: Mapped[int | None] = mapped_column(Integer)
    satisfaction: Mapped[float | None] = mapped_column(Float)
    churn_reasons: Mapped[list[Any] | None] = mapped_column(JSON)
    value_policy_version: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    phones: Mapped[list[CustomerPhone]] = relationship(
        back_populates="customer", cascade="all, delete-orphan", lazy="selectin",
        order_by="CustomerPhone.position",
    )


class CustomerPhone(Base):
    """One row per E.164 number, so an incoming ANI finds its customer by index."""

    __tablename__ = "customer_phones"

    phone: Mapped[str] = mapped_column(String(20), primary_key=True)
    customer_id: Mapped[str] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)

    customer: Mapped[Customer] = relationship(back_populates="phones")


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[str] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    ordered_on: Mapped[dt.date] = mapped_column(Date)
    amount: Mapped[float] = mapped_column(Money)
    cost: Mapped[float] = mapped_column(Money, default=0.0)


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.agent.value)
    extension: Mapped[str | None] = mapped_column(String(32))
    skills: Mapped[list[Any]] = mapped_column(default=list)
    level: Mapped[int] = mapped_column(Integer, default=1)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The supervisor's team (docs/admin.md): supervisors manage the agents of their own.
    team: Mapped[str | None] = mapped_column(String(64))
    # Queues the agent is a member of; none: every queue whose skills it has.
    queues: Mapped[list[Any]] = mapped_column(default=list)


class Queue(Base):
    __tablename__ = "queues"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    skills: Mapped[list[Any]] = mapped_column(default=list)
    wrap_up_s: Mapped[float | None] = mapped_column(Float)
    sl_threshold_s: Mapped[int] = mapped_column(Integer, default=20)
    sl_target: Mapped[float] = mapped_column(Float, default=0.8)
    # Seconds of head start per customer tier in this queue; None: the center's policy.
    tier_boost_s: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ReasonCode(Base):
    """A not-ready reason or a disposition code agents pick (docs/admin.md). Until an
    admin sets a kind's list, the environment's list is used."""

    __tablename__ = "reason_codes"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # not_ready | disposition
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    position: Mapped[int] = mapped_column(Integer, default=0)


class CenterSetting(Base):
    """A center-wide setting an admin changes at run time (routing policy, skills)."""

    __tablename__ = "center_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Call(Base):
    """A call's persisted state, written before its event is acknowledged."""

    __tablename__ = "calls"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    queue: Mapped[str] = mapped_column(String(64), default="default")
    ani: Mapped[str] = mapped_column(String(64), default="")
    dnis: Mapped[str] = mapped_column(String(64), default="")
    customer_id: Mapped[str | None] = mapped_column(String(64), index=True)
    tier: Mapped[str] = mapped_column(String(16), default="standard")
    agent_id: Mapped[int | None] = mapped_column(Integer)
    ivr: Mapped[dict[str, Any]] = mapped_column(default=dict)
    offered_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    node_id: Mapped[str | None] = mapped_column(String(64))
    # The last write applied (core/writer.py): the call's steps in Redis number their
    # writes, so an older write stored late never undoes a newer one. -1: a placeholder
    # kept for writes that came before the call's offer was stored.
    seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class ParkedUpdate(Base):
    """A numbered write of a row that was not stored yet (core/writer.py): kept until the
    row's insert comes, then applied in order."""

    __tablename__ = "parked_updates"

    id: Mapped[int] = mapped_column(primary_key=True)
    table_name: Mapped[str] = mapped_column(String(64))
    ident: Mapped[str] = mapped_column(String(200))
    seq: Mapped[int] = mapped_column(BigInteger)
    op: Mapped[str] = mapped_column(Text)  # core/writer.py dumps
    parked_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_parked_updates_row", "table_name", "ident"),)


class ProcessedEvent(Base):
    """Event ids already applied: a resent event is acknowledged, not applied twice."""

    __tablename__ = "processed_events"

    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(128), index=True)
    type: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Interaction(Base):
    __tablename__ = "interactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(String(128), unique=True)
    customer_id: Mapped[str | None] = mapped_column(String(64), index=True)
    agent_id: Mapped[int | None] = mapped_column(Integer, index=True)
    agent_ids: Mapped[list[Any]] = mapped_column(default=list)
    queue: Mapped[str] = mapped_column(String(64), default="default")
    tier: Mapped[str] = mapped_column(String(16), default="standard")
    ani: Mapped[str] = mapped_column(String(64), default="")
    ivr: Mapped[dict[str, Any]] = mapped_column(default=dict)
    offered_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    answered_at: Mapped[dt.datetime | None]
    ended_at: Mapped[dt.datetime | None]
    end_cause: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str | None] = mapped_column(String(16))  # answered | abandoned | failed
    wait_s: Mapped[float | None] = mapped_column(Float)
    talk_s: Mapped[float | None] = mapped_column(Float)
    # From the call's end to the end of its wrap-up (wrapup.done or the wrap-up timer).
    wrap_up_s: Mapped[float | None] = mapped_column(Float)
    routing_reason: Mapped[dict[str, Any]] = mapped_column(default=dict)
    disposition: Mapped[str | None] = mapped_column(String(64))
    notes: Mapped[str | None] = mapped_column(Text)
    survey_score: Mapped[int | None] = mapped_column(Integer)
    # Satisfaction index c = perception / expectation (both 1..5, optional).
    survey_expectation: Mapped[int | None] = mapped_column(Integer)
    survey_perception: Mapped[int | None] = mapped_column(Integer)
    recording_path: Mapped[str | None] = mapped_column(String(1024))
    transcript_status: Mapped[str] = mapped_column(String(16), default="none")
    transcript_error: Mapped[str | None] = mapped_column(Text)
    transcript: Mapped[list[Any] | None] = mapped_column(JSON)
    complaint_flag: Mapped[bool] = mapped_column(Boolean, default=False)
    # Call control (cti/holds.py, cti/control.py): holds and seconds on hold (part of
    # talk_s), seconds in conference, and the call's legs in order (agents, transfers).
    hold_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    hold_s: Mapped[float] = mapped_column(Float, default=0.0)
    conference_s: Mapped[float | None] = mapped_column(Float)
    legs: Mapped[list[Any] | None] = mapped_column(JSON)
    # The callback this call placed (cti/callbacks.py): reports count it apart.
    callback_id: Mapped[str | None] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")  # as Call.seq
    # PCI pauses of the recording (cti/recording_pauses.py): [{from_s, to_s, by,
    # resumed_by}], seconds from the answer.
    recording_pauses: Mapped[list[Any] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_interactions_customer_offered", "customer_id", "offered_at"),)


class Complaint(Base):
    __tablename__ = "complaints"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    interaction_id: Mapped[int | None] = mapped_column(ForeignKey("interactions.id"))
    # The queue of the call it came from, kept when retention deletes the call (reports).
    queue: Mapped[str | None] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(32), default="other")
    state: Mapped[str] = mapped_column(String(16), default="received", index=True)
    source: Mapped[str] = mapped_column(String(16), default="agent")  # agent | detected
    summary: Mapped[str] = mapped_column(Text, default="")
    score: Mapped[float | None] = mapped_column(Float)
    evidence: Mapped[list[Any]] = mapped_column(default=list)
    cause_side: Mapped[str | None] = mapped_column(String(16))  # company | customer
    resolution: Mapped[str | None] = mapped_column(Text)
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    assigned_agent_id: Mapped[int | None] = mapped_column(Integer)
    tier: Mapped[str] = mapped_column(String(16), default="standard")
    sla_due_at: Mapped[dt.datetime | None]
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    closed_at: Mapped[dt.datetime | None]


class ComplaintEvent(Base):
    __tablename__ = "complaint_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    complaint_id: Mapped[int] = mapped_column(
        ForeignKey("complaints.id", ondelete="CASCADE"), index=True
    )
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AgentStateChange(Base):
    __tablename__ = "agent_state_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(Integer, index=True)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)

    # An agent's change before or after a moment (the agent-state rollup, recovery).
    __table_args__ = (Index("ix_agent_state_changes_agent_at", "agent_id", "at"),)


class ApiToken(Base):
    """Issued tokens by id (JWT ``jti``), so logout and `token revoke` can revoke them."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16))
    agent_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(128))
    remote: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ValueRun(Base):
    """One segmentation run: the policy it used and what it measured of the base."""

    __tablename__ = "value_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    policy_version: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    customers: Mapped[int] = mapped_column(Integer, default=0)
    orders: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)


class WinBackAction(Base):
    """A supervisor's win-back decision for a customer at risk: an outbound callback
    to schedule (the callback itself is placed by the callbacks feature)."""

    __tablename__ = "winback_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    due_at: Mapped[dt.datetime]
    state: Mapped[str] = mapped_column(String(16), default="scheduled")
    requested_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # the callback it scheduled (None: it could not be scheduled)
    callback_id: Mapped[str | None] = mapped_column(String(64))


class Callback(Base):
    """A queue callback (routing/callbacks.py): asked for by a waiting caller (`source`
    caller, `call_id` the call it replaced), promised by an agent (agent) or scheduled by
    the win-back action (winback). Written before its event is acknowledged; pending
    ones are rebuilt in Redis from here when Redis lost them (cti/recovery.py)."""

    __tablename__ = "callbacks"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    call_id: Mapped[str | None] = mapped_column(String(128), index=True)
    source: Mapped[str] = mapped_column(String(16), default="caller")
    number: Mapped[str] = mapped_column(String(64))
    queue: Mapped[str] = mapped_column(String(64), default="default")
    customer_id: Mapped[str | None] = mapped_column(String(64), index=True)
    tier: Mapped[str] = mapped_column(String(16), default="standard")
    # pending | connected | failed | cancelled
    state: Mapped[str] = mapped_column(String(16), index=True, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_outcome: Mapped[str | None] = mapped_column(String(16))
    # The agent it is promised to (scheduled by an agent, or reassigned), then the agent
    # who took it.
    agent_id: Mapped[int | None] = mapped_column(Integer)
    requested_by: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    integration: Mapped[str] = mapped_column(String(64), default="")
    # Its place: the priority score and rings of the call it replaced, and their clock.
    score: Mapped[float] = mapped_column(Float)
    rings: Mapped[str] = mapped_column(Text, default="")
    offered_at: Mapped[dt.datetime]
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    due_at: Mapped[dt.datetime]
    ended_at: Mapped[dt.datetime | None]


# Reports (reports/, docs/reports.md): kept by the record writer in the transaction
# that writes the call records, rebuildable from them by `callcenter report rebuild`.

class CallTransfer(Base):
    """One row per transfer of a call: the leg that ended, as the record held it then."""

    __tablename__ = "call_transfers"

    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(128), index=True)
    seq: Mapped[int] = mapped_column(Integer)  # 1 for the call's first transfer
    at: Mapped[dt.datetime]
    agent_id: Mapped[int | None] = mapped_column(Integer)  # who transferred it
    queue: Mapped[str] = mapped_column(String(64))
    answered_at: Mapped[dt.datetime | None]
    wait_s: Mapped[float | None] = mapped_column(Float)


class ReportCall(Base):
    """What one call adds to its rollup row, as last counted: the next change of the call
    adds the difference, so a replayed event adds nothing."""

    __tablename__ = "report_calls"

    call_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    start: Mapped[dt.datetime] = mapped_column(index=True)
    queue: Mapped[str] = mapped_column(String(64))
    tier: Mapped[str] = mapped_column(String(16))
    offered: Mapped[int] = mapped_column(Integer, default=0)
    answered: Mapped[int] = mapped_column(Integer, default=0)
    answered_within: Mapped[int] = mapped_column(Integer, default=0)
    abandoned: Mapped[int] = mapped_column(Integer, default=0)
    abandoned_short: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    wait_sum: Mapped[float] = mapped_column(Float, default=0.0)
    wait_max: Mapped[float] = mapped_column(Float, default=0.0)
    talk_n: Mapped[int] = mapped_column(Integer, default=0)
    talk_sum: Mapped[float] = mapped_column(Float, default=0.0)
    transfers: Mapped[int] = mapped_column(Integer, default=0)
    csat_n: Mapped[int] = mapped_column(Integer, default=0)
    csat_sum: Mapped[float] = mapped_column(Float, default=0.0)
    csat_good: Mapped[int] = mapped_column(Integer, default=0)
    wrap_n: Mapped[int] = mapped_column(Integer, default=0)
    wrap_sum: Mapped[float] = mapped_column(Float, default=0.0)
    hold_sum: Mapped[float] = mapped_column(Float, default=0.0)  # of calls with talk
    # callers who left the line for a callback; callbacks that reached the customer
    callbacks: Mapped[int] = mapped_column(Integer, default=0)
    callbacks_connected: Mapped[int] = mapped_column(Integer, default=0)


class ReportInterval(Base):
    """The figures of the calls offered in one 15-minute interval (UTC), per queue and tier."""

    __tablename__ = "report_intervals"

    start: Mapped[dt.datetime] = mapped_column(primary_key=True)
    queue: Mapped[str] = mapped_column(String(64), primary_key=True)
    tier: Mapped[str] = mapped_column(String(16), primary_key=True)
    offered: Mapped[int] = mapped_column(Integer, default=0)
    answered: Mapped[int] = mapped_column(Integer, default=0)
    answered_within: Mapped[int] = mapped_column(Integer, default=0)
    abandoned: Mapped[int] = mapped_column(Integer, default=0)
    abandoned_short: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    wait_sum: Mapped[float] = mapped_column(Float, default=0.0)  # of answered calls
    wait_max: Mapped[float] = mapped_column(Float, default=0.0)  # of any call
    talk_n: Mapped[int] = mapped_column(Integer, default=0)
    talk_sum: Mapped[float] = mapped_column(Float, default=0.0)
    transfers: Mapped[int] = mapped_column(Integer, default=0)
    csat_n: Mapped[int] = mapped_column(Integer, default=0)
    csat_sum: Mapped[float] = mapped_column(Float, default=0.0)
    csat_good: Mapped[int] = mapped_column(Integer, default=0)
    wrap_n: Mapped[int] = mapped_column(Integer, default=0)
    wrap_sum: Mapped[float] = mapped_column(Float, default=0.0)
    hold_sum: Mapped[float] = mapped_column(Float, default=0.0)  # of calls with talk
    # callers who left the line for a callback; callbacks that reached the customer
    callbacks: Mapped[int] = mapped_column(Integer, default=0)
    callbacks_connected: Mapped[int] = mapped_column(Integer, default=0)


class ReportAgentState(Base):
    """Seconds an agent spent in a state (and not-ready reason, '' for none) in one
    15-minute interval (UTC), of the segments closed by the agent's next change."""

    __tablename__ = "report_agent_states"

    start: Mapped[dt.datetime] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(16), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


class AgentCallFigures:
    """The call figures an agent's rollup rows sum (`transfers`: legs the agent answered)."""

    handled: Mapped[int] = mapped_column(Integer, default=0)
    transfers: Mapped[int] = mapped_column(Integer, default=0)
    talk_n: Mapped[int] = mapped_column(Integer, default=0)
    talk_sum: Mapped[float] = mapped_column(Float, default=0.0)
    wrap_n: Mapped[int] = mapped_column(Integer, default=0)
    wrap_sum: Mapped[float] = mapped_column(Float, default=0.0)
    csat_n: Mapped[int] = mapped_column(Integer, default=0)
    csat_sum: Mapped[float] = mapped_column(Float, default=0.0)
    hold_sum: Mapped[float] = mapped_column(Float, default=0.0)


class ReportCallAgent(AgentCallFigures, Base):
    """What one call adds to one agent's rollup row, as last counted (as `ReportCall`)."""

    __tablename__ = "report_call_agents"

    call_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    agent_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[dt.datetime] = mapped_column(index=True)


class ReportAgentInterval(AgentCallFigures, Base):
    """The call figures of one agent for the calls offered in one 15-minute interval (UTC)."""

    __tablename__ = "report_agent_intervals"

    start: Mapped[dt.datetime] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(Integer, primary_key=True)


class ReportAgentDay(AgentCallFigures, Base):
    """An agent's call figures and seconds in each state on one local day of `zone` (the
    center's time zone when written): the sums of its `ReportAgentInterval` and
    `ReportAgentState` rows of that day (PostgreSQL only). The call figures and the
    seconds are added by different hooks: each inserts its own columns."""

    __tablename__ = "report_agent_days"

    zone: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    agent_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    available_s: Mapped[float] = mapped_column(Float, default=0.0)
    ringing_s: Mapped[float] = mapped_column(Float, default=0.0)
    on_call_s: Mapped[float] = mapped_column(Float, default=0.0)
    wrap_up_s: Mapped[float] = mapped_column(Float, default=0.0)
    not_ready_s: Mapped[float] = mapped_column(Float, default=0.0)


class ReportAgentDayReason(Base):
    """An agent's not-ready seconds with one reason on one local day of `zone`."""

    __tablename__ = "report_agent_day_reasons"

    zone: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    agent_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


class ReportAgentHour(AgentCallFigures, Base):
    """An agent's call figures and seconds in each state in one hour (UTC): the sums of
    its `ReportAgentInterval` and `ReportAgentState` rows of that hour (PostgreSQL only),
    added by the two hooks as `ReportAgentDay`'s."""

    __tablename__ = "report_agent_hours"

    start: Mapped[dt.datetime] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    available_s: Mapped[float] = mapped_column(Float, default=0.0)
    ringing_s: Mapped[float] = mapped_column(Float, default=0.0)
    on_call_s: Mapped[float] = mapped_column(Float, default=0.0)
    wrap_up_s: Mapped[float] = mapped_column(Float, default=0.0)
    not_ready_s: Mapped[float] = mapped_column(Float, default=0.0)


class ReportAgentHourReason(Base):
    """An agent's not-ready seconds with one reason in one hour (UTC)."""

    __tablename__ = "report_agent_hour_reasons"

    start: Mapped[dt.datetime] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


class CustomerTierChange(Base):
    """A customer's tier changed (a segmentation run): the tier movements of reports."""

    __tablename__ = "customer_tier_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    from_tier: Mapped[str] = mapped_column(String(16))
    to_tier: Mapped[str] = mapped_column(String(16))


class WebhookSubscription(Base):
    """An outbound webhook: where to POST which events, signed with `secret`."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[Any]] = mapped_column(default=list)
    secret: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one subscription: pending until a 2xx, dead after the retry window.

    `seq` (the event's stream id, zero-padded) orders the deliveries of one `order_key`
    (the call): only the oldest pending one of a key is sent.
    """

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(40))
    order_key: Mapped[str] = mapped_column(String(160))
    seq: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[dt.datetime | None]
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None]

    __table_args__ = (
        Index("ix_webhook_deliveries_sub_event", "subscription_id", "event_id", unique=True),
        Index("ix_webhook_deliveries_sub_key", "subscription_id", "order_key", "status", "seq"),
    )


class QualityForm(Base):
    """An evaluation form: sections of weighted questions (`quality/forms.py` checks them).

    An evaluation keeps a copy of the form it was scored with, so editing a form never
    changes a score already given.
    """

    __tablename__ = "quality_forms"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    sections: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class QualityEvaluation(Base):
    """A scored recorded call: submitted -> acknowledged, or disputed -> resolved."""

    __tablename__ = "quality_evaluations"

    id: Mapped[int] = mapped_column(primary_key=True)
    form_id: Mapped[int] = mapped_column(ForeignKey("quality_forms.id"))
    form: Mapped[dict[str, Any]] = mapped_column(default=dict)  # as scored
    # Kept when retention deletes the call's record: the score stays in the statistics.
    interaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("interactions.id", ondelete="SET NULL"))
    call_id: Mapped[str] = mapped_column(String(128))
    agent_id: Mapped[int] = mapped_column(Integer, index=True)  # who is evaluated
    queue: Mapped[str] = mapped_column(String(64), default="default")
    call_at: Mapped[dt.datetime] = mapped_column(index=True)
    evaluator_id: Mapped[int] = mapped_column(Integer)
    evaluator: Mapped[str] = mapped_column(String(64))
    answers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    comment: Mapped[str] = mapped_column(Text, default="")
    score: Mapped[float] = mapped_column(Float)
    earned: Mapped[float] = mapped_column(Float)
    applicable: Mapped[float] = mapped_column(Float)
    critical_failed: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="submitted", index=True)
    agent_comment: Mapped[str | None] = mapped_column(Text)
    resolution: Mapped[str | None] = mapped_column(String(16))  # upheld | revised
    resolution_note: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    original_score: Mapped[float | None] = mapped_column(Float)  # before a revision
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_quality_evaluations_call_form_evaluator", "interaction_id", "form_id",
              "evaluator_id", unique=True),
    )
