"""A generated, realistic demo data set: customers, orders, agents, queues, history.

Deterministic for a seed (dates are relative to today, so the value tiers come out
the same whenever it is loaded). Spend is Pareto-like: a few big spenders, many
small ones, some lapsed for over a year, and prospects who never bought.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from dataclasses import dataclass
from typing import Any

import phonenumbers
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.auth import hash_password
from core.db import session_scope
from core.models import (
    Agent,
    Complaint,
    Customer,
    CustomerPhone,
    Interaction,
    Order,
    Queue,
    Role,
    utcnow,
)
from crm.segment import segment_all

log = logging.getLogger(__name__)

DEMO_PASSWORD = "demo1234"
AGENT_COUNT = 12

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟",
          "涛", "明", "超", "秀英", "霞", "平", "刚", "桂英", "建华", "婷", "浩", "宇", "欣怡"]
_PINYIN = ["Li Na", "Wang Fang", "Zhang Wei", "Liu Yang", "Chen Jing", "Yang Min", "Zhao Lei",
           "Huang Yan", "Zhou Jie", "Wu Tao", "Xu Ming", "Sun Li"]
_FIRST = ["John", "Mary", "James", "Linda", "Michael", "Sarah", "David", "Emma", "Robert",
          "Olivia", "William", "Sophie", "Daniel", "Grace", "Thomas", "Emily"]
_LAST = ["Smith", "Johnson", "Brown", "Taylor", "Wilson", "Davies", "Evans", "Walker",
         "Clark", "Wright", "Hall", "Green"]
_COMPANIES = ["华为技术有限公司", "上海贸易有限公司", "北京科技发展有限公司",
              "深圳电子商务有限公司", "广州物流集团", "Acme Corp", "Globex Ltd", "Initech",
              "Northwind Traders", "Contoso Ltd"]
_TAGS = ["wholesale", "retail", "newsletter", "wechat", "referral", "online", "store", "b2b"]
_CN_PREFIXES = [f"13{d}" for d in range(10)] + ["150", "151", "152", "155", "156", "157",
                                                "158", "159"] + [f"18{d}" for d in range(10)]
_US_AREAS = ["212", "415", "646", "310", "617", "312"]
_CATEGORIES = ["product_quality", "service_attitude", "delivery", "billing_refund"]
_OPEN_STATES = ["received", "received", "validated", "resolving"]  # transcripts/complaints.py
_COMPLAINT_STATES = [*_OPEN_STATES, *_OPEN_STATES, "resolved", "closed", "rejected"]
_DISPOSITIONS = ["resolved", "follow_up", "escalated", "sale", "information"]
_QUEUES = [
    {"name": "default", "display_name": "General", "skills": [], "sl_threshold_s": 20,
     "sl_target": 0.8},
    {"name": "sales", "display_name": "Sales", "skills": ["sales"], "sl_threshold_s": 20,
     "sl_target": 0.8},
    {"name": "billing", "display_name": "Billing", "skills": ["billing"], "sl_threshold_s": 30,
     "sl_target": 0.8},
    {"name": "vip", "display_name": "VIP", "skills": ["vip"], "sl_threshold_s": 10,
     "sl_target": 0.9},
]
# (display name, skills, level) for agent1..agent12.
_AGENTS = [
    ("王芳", ["sales", "vip", "zh", "en"], 3), ("李娜", ["sales", "zh"], 2),
    ("John Smith", ["sales", "en"], 1), ("张伟", ["billing", "zh"], 2),
    ("Emma Brown", ["billing", "en", "zh"], 3), ("刘洋", ["support", "zh"], 1),
    ("David Clark", ["support", "en"], 1), ("陈静", ["support", "zh", "en"], 2),
    ("赵磊", ["complaints", "zh"], 3), ("Sarah Walker", ["complaints", "support", "en", "zh"], 2),
    ("周杰", ["vip", "sales", "billing", "zh", "en"], 3), ("吴涛", ["support", "billing", "zh"], 1),
]
# Archetype: (share of customers, order count range, days-ago range, median amount).
_ARCHETYPES = [
    (0.04, (15, 40), (1, 730), 3000.0),   # big spenders
    (0.16, (4, 12), (1, 540), 600.0),     # regulars
    (0.35, (1, 3), (1, 360), 150.0),      # occasional
    (0.15, (1, 6), (400, 1100), 300.0),   # lapsed for over a year
    (0.30, (0, 0), (0, 0), 0.0),          # prospects, never bought
]
_WEIGHTS = [a[0] for a in _ARCHETYPES]


@dataclass(frozen=True)
class DemoCredentials:
    agents: tuple[str, ...] = tuple(f"agent{i}" for i in range(1, AGENT_COUNT + 1))
    supervisor: str = "supervisor"
    admin: str = "admin"
    password: str = DEMO_PASSWORD
    loaded: bool = False  # False when the demo data was there already

    def __str__(self) -> str:
        return (f"{self.agents[0]}..{self.agents[-1]}, {self.supervisor}, {self.admin} "
                f"(password {self.password})")


async def load_demo(
    maker: async_sessionmaker[AsyncSession], *, seed: int = 7, customers: int = 3000
) -> DemoCredentials:
    """Load the demo data set once, then segment; a second call changes nothing."""
    async with session_scope(maker) as session:
        if await session.scalar(select(Agent.id).where(Agent.username == "agent1")):
            log.info("demo data already loaded")
            return DemoCredentials()
        await _load(session, random.Random(seed), customers)
    await segment_all(maker, progress=False)
    log.info("demo data loaded: %d customers", customers)
    return DemoCredentials(loaded=True)


async def _load(session: AsyncSession, rng: random.Random, count: int) -> None:
    now = utcnow()
    used = set(await session.scalars(select(CustomerPhone.phone)))
    people = [_customer(rng, i, used) for i in range(1, count + 1)]
    agent_ids = await _add_staff(session)
    queues = set(await session.scalars(select(Queue.name)))
    rows: list[tuple[Any, list[dict[str, Any]]]] = [
        (Queue, [q for q in _QUEUES if q["name"] not in queues]),
        (Customer, [p for p, _ in people]),
        (CustomerPhone, [ph for _, phones in people for ph in phones]),
        (Order, [o for p, _ in people for o in _orders(rng, p["id"], now.date())]),
        (Complaint, _complaints(rng, [p for p, _ in people], now)),
        (Interaction, _interactions(rng, people, agent_ids, now)),
    ]
    for model, values in rows:
        if values:
            await session.execute(insert(model.__table__), values)


async def _add_staff(session: AsyncSession) -> list[int]:
    # One hash for every demo user: they share the password, and Argon2 is slow on purpose.
    password_hash = hash_password(DEMO_PASSWORD)
    agents = [
        Agent(username=f"agent{i}", display_name=name, password_hash=password_hash,
              role=Role.agent.value, extension=str(1000 + i), skills=skills, level=level)
        for i, (name, skills, level) in enumerate(_AGENTS, start=1)
    ]
    staff = [Agent(username=role.value, display_name=role.value.title(), role=role.value,
                   password_hash=password_hash) for role in (Role.supervisor, Role.admin)]
    session.add_all(agents + staff)
    await session.flush()
    return [a.id for a in agents]


def _customer(
    rng: random.Random, i: int, used: set[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    cid = f"demo-{i:05d}"
    kind = rng.random()
    if kind < 0.6:
        name, email = rng.choice(_SURNAMES) + rng.choice(_GIVEN), None
        phones = [_phone(rng, "CN", used) for _ in range(rng.choice((1, 1, 1, 2)))]
    else:
        name = rng.choice(_PINYIN) if kind < 0.75 else f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        email = f"{name.lower().replace(' ', '.')}{i}@example.com"
        phones = [_phone(rng, rng.choice(("CN", "CN", "US", "GB")), used)]
    customer = {
        "id": cid, "name": name, "email": email if rng.random() < 0.8 else None,
        "company": rng.choice(_COMPANIES) if rng.random() < 0.4 else None,
        "tags": rng.sample(_TAGS, rng.choice((0, 1, 1, 2, 3))), "lifecycle_stage": "prospect",
    }
    return customer, [{"phone": p, "customer_id": cid, "position": n} for n, p in enumerate(phones)]


def _phone(rng: random.Random, region: str, used: set[str]) -> str:
    while True:
        if region == "CN":
            raw = f"+86{rng.choice(_CN_PREFIXES)}{rng.randrange(10**8):08d}"
        elif region == "US":
            raw = f"+1{rng.choice(_US_AREAS)}{rng.randrange(200, 1000)}{rng.randrange(10**4):04d}"
        else:
            raw = f"+447{rng.randrange(400, 1000)}{rng.randrange(10**6):06d}"
        if raw not in used and phonenumbers.is_valid_number(phonenumbers.parse(raw)):
            used.add(raw)
            return raw


def _orders(rng: random.Random, cid: str, today: dt.date) -> list[dict[str, Any]]:
    _, (low, high), (newest, oldest), median = rng.choices(_ARCHETYPES, _WEIGHTS)[0]
    orders = []
    for _ in range(rng.randint(low, high)):
        amount = round(median * rng.lognormvariate(0, 0.6), 2)
        orders.append({
            "customer_id": cid, "amount": amount,
            "ordered_on": today - dt.timedelta(days=rng.randint(newest, oldest)),
            "cost": round(amount * rng.uniform(0.5, 0.8), 2),
        })
    return orders


def _complaints(
    rng: random.Random, customers: list[dict[str, Any]], now: dt.datetime
) -> list[dict[str, Any]]:
    """Complaints in every state; the open ones all still within their SLA, so a first
    start shows a calm center (escalations come later, as the clock runs)."""
    complaints = []
    for customer in rng.sample(customers, min(36, len(customers))):
        state = rng.choice(_COMPLAINT_STATES)
        created = now - dt.timedelta(hours=rng.randint(1, 40) if state in _OPEN_STATES
                                     else rng.randint(50, 600))
        done = created + dt.timedelta(hours=rng.randint(2, 40))
        complaints.append({
            "customer_id": customer["id"], "category": rng.choice(_CATEGORIES),
            "state": state, "source": "agent", "created_by": "demo",
            "summary": rng.choice(["商品有质量问题", "快递一直没到", "Charged twice for one order",
                                   "Agent was rude on the phone", "退款还没有到账"]),
            "created_at": created, "updated_at": created if state in _OPEN_STATES else done,
            "sla_due_at": created + dt.timedelta(hours=48), "escalation_level": 0,
            "resolution": None if state in _OPEN_STATES else "Refunded and apologised",
            "closed_at": done if state in ("closed", "rejected") else None,
            "rejection_reason": "Not the company's fault" if state == "rejected" else None,
        })
    return complaints


def _interactions(
    rng: random.Random, people: list[tuple[dict[str, Any], list[dict[str, Any]]]],
    agent_ids: list[int], now: dt.datetime,
) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    for customer, phones in rng.sample(people, len(people) // 7):
        agent_id = rng.choice(agent_ids)  # most customers keep talking to the same agent
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.3:
                agent_id = rng.choice(agent_ids)
            calls.append(_call(rng, len(calls) + 1, customer["id"], phones[0]["phone"],
                               agent_id, now))
    return calls


def _call(
    rng: random.Random, n: int, cid: str, ani: str, agent_id: int, now: dt.datetime
) -> dict[str, Any]:
    offered = now - dt.timedelta(minutes=rng.randint(60, 120 * 24 * 60))
    wait, talk = rng.uniform(2, 90), rng.uniform(30, 900)
    answered = rng.random() < 0.9
    return {
        "call_id": f"demo-call-{n:06d}", "customer_id": cid, "ani": ani,
        "queue": rng.choice(_QUEUES)["name"], "offered_at": offered, "wait_s": round(wait, 1),
        "outcome": "answered" if answered else "abandoned",
        "agent_id": agent_id if answered else None, "agent_ids": [agent_id] if answered else [],
        "answered_at": offered + dt.timedelta(seconds=wait) if answered else None,
        "ended_at": offered + dt.timedelta(seconds=wait + (talk if answered else 0)),
        "end_cause": "normal_clearing" if answered else "caller_hangup",
        "talk_s": round(talk, 1) if answered else None,
        "disposition": rng.choice(_DISPOSITIONS) if answered else None,
        "survey_score": rng.choice((None, None, 5, 5, 4, 4, 3, 2, 1)) if answered else None,
        "complaint_flag": answered and rng.random() < 0.05,
    }
