"""Read the base for the value model as columns (crm/value_columns.py).

The customer facts come from a handful of grouped queries. The orders of a full run
on PostgreSQL come by binary COPY (crm/pg_copy.py), each row a fixed 46 bytes
(customer key, day, amount and cost in cents) read straight into numpy arrays, a few
bytes an order; on SQLite, and for the few customers of a nightly run, they are
streamed through SQLAlchemy. Parsing runs in a thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from tqdm import tqdm

from core.models import Complaint, Customer, CustomerPhone, Interaction
from core.models import Order as OrderRow
from crm.open_complaints import is_open_complaint
from crm.pg_copy import copy_rows, row_type
from crm.satisfaction import customer_satisfaction_query
from crm.value_columns import FactColumns, OrderColumns, cents

_STREAM_ROWS = 10_000
_PG_EPOCH = dt.date(2000, 1, 1).toordinal()
_FIELDS = ("customer", "day", "amount", "cost")


async def load_facts(session: AsyncSession, since: dt.datetime | None, until: dt.datetime,
                     ids: list[str] | None = None) -> FactColumns:
    """Contact, open complaints, and the period's cost to serve and satisfaction; of
    every customer, or of `ids` only."""
    phones = select(CustomerPhone.customer_id).distinct()
    open_q = (select(Complaint.customer_id, func.count())
              .where(is_open_complaint()).group_by(Complaint.customer_id))
    handled = (select(Complaint.customer_id, func.count())
               .where(Complaint.created_at < until).group_by(Complaint.customer_id))
    talk = (select(Interaction.customer_id, func.sum(Interaction.talk_s))
            .where(Interaction.customer_id.is_not(None), Interaction.offered_at < until)
            .group_by(Interaction.customer_id))
    csat_q = customer_satisfaction_query(since, until)
    people = select(Customer.id, Customer.email)
    if since is not None:
        handled = handled.where(Complaint.created_at >= since)
        talk = talk.where(Interaction.offered_at >= since)
    if ids is not None:
        phones = phones.where(CustomerPhone.customer_id.in_(ids))
        open_q, handled = (q.where(Complaint.customer_id.in_(ids)) for q in (open_q, handled))
        talk, csat_q = (q.where(Interaction.customer_id.in_(ids)) for q in (talk, csat_q))
        people = people.where(Customer.id.in_(ids))
    with_phone = set(await session.scalars(phones))
    open_, complaints = await _counts(session, open_q), await _counts(session, handled)
    seconds, csat = await _counts(session, talk), await _counts(session, csat_q)
    customers: list[str] = []
    contact: list[bool] = []
    result = await session.stream(people.execution_options(yield_per=_STREAM_ROWS))
    async for rows in result.partitions():
        for cid, email in rows:
            customers.append(cid)
            contact.append(bool(email) or cid in with_phone)
    return await asyncio.to_thread(_facts, customers, contact, open_, seconds, complaints,
                                   csat)


def _facts(ids: list[str], contact: list[bool], open_: dict[str, Any], seconds: dict[str, Any],
           complaints: dict[str, Any], csat: dict[str, Any]) -> FactColumns:
    index = {cid: k for k, cid in enumerate(ids)}
    return FactColumns(
        ids=ids, has_contact=np.array(contact, dtype=np.bool_),
        open_complaints=_column(index, open_, np.int64, 0),
        handle_minutes=_column(index, seconds, np.float64, 0.0) / 60,
        complaints_in_period=_column(index, complaints, np.int64, 0),
        satisfaction=_column(index, csat, np.float64, math.nan))


def _column(index: dict[str, int], values: dict[str, Any], dtype: Any, missing: float) -> Any:
    """A column of the customers `index` holds; `values` holds the few that have one."""
    out = np.full(len(index), missing, dtype=dtype)
    for cid, v in values.items():
        k = index.get(cid)
        if k is not None and v is not None:
            out[k] = v
    return out


async def _counts(session: AsyncSession, query: Any) -> dict[str, Any]:
    return {k: v for k, v in (await session.execute(query)).all()}


async def load_orders(session: AsyncSession, ids: list[str], today: dt.date,
                      progress: bool, subset: bool = False) -> OrderColumns:
    """Every order up to `today` of the customers `ids` (all of them unless `subset`),
    with the customer as its index in `ids`."""
    total = 0 if not progress else int(await session.scalar(
        select(func.count()).select_from(OrderRow).where(OrderRow.ordered_on <= today)) or 0)
    with tqdm(total=total, unit="order", desc="load", disable=not progress) as bar:
        if session.get_bind().dialect.name == "postgresql" and not subset:
            return await _copy_orders(session, ids, today, bar)
        return await _stream_orders(session, ids, today, bar, subset)


async def _stream_orders(session: AsyncSession, ids: list[str], today: dt.date, bar: Any,
                         subset: bool) -> OrderColumns:
    index = {cid: k for k, cid in enumerate(ids)}
    query = select(OrderRow.customer_id, OrderRow.ordered_on, OrderRow.amount,
                   OrderRow.cost).where(OrderRow.ordered_on <= today)
    parts: list[OrderColumns] = []
    for chunk in _chunks(ids, 5000) if subset else [None]:
        q = query if chunk is None else query.where(OrderRow.customer_id.in_(chunk))
        result = await session.stream(q.execution_options(yield_per=_STREAM_ROWS))
        async for rows in result.partitions():  # a row at a time costs a greenlet switch
            known = [r for r in rows if r[0] in index]  # a customer added since: next run
            parts.append(OrderColumns(
                np.array([index[r[0]] for r in known], dtype=np.int64),
                np.array([r[1].toordinal() for r in known], dtype=np.int64),
                cents([float(r[2]) for r in known]), cents([float(r[3] or 0) for r in known])))
            bar.update(len(rows))
    return _concat(parts)


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[k:k + size] for k in range(0, len(items), size)]


def _concat(parts: list[OrderColumns]) -> OrderColumns:
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return OrderColumns(empty, empty, empty, empty)
    return OrderColumns(*(np.concatenate([getattr(p, f) for p in parts])
                          for f in ("customer", "day", "amount", "cost")))


_ORDER_ROW = row_type(("key", ">i8"), ("day", ">i4"), ("amount", ">i8"), ("cost", ">i8"))
_HASHES = """
    SELECT hashtextextended(u.id, 0) FROM unnest($1::text[]) WITH ORDINALITY AS u(id, n)
    ORDER BY u.n"""
_ORDERS = """
    SELECT {key}, o.ordered_on - DATE '2000-01-01', (o.amount * 100)::int8,
           (coalesce(o.cost, 0) * 100)::int8
    FROM orders o {join} WHERE o.ordered_on <= $1 AND o.amount IS NOT NULL"""
# Each order names its customer by a 64-bit hash of the id, matched to the customers'
# hashes here: far cheaper for the database than joining ten million orders to a table
# of indexes. Should two customers' ids ever share a hash, the join is used instead.
_BY_HASH = _ORDERS.format(key="hashtextextended(o.customer_id, 0)", join="")
_BY_JOIN = _ORDERS.format(key="s.k::int8", join="JOIN seg_ids s ON s.id = o.customer_id")


async def _copy_orders(session: AsyncSession, ids: list[str], today: dt.date,
                       bar: Any) -> OrderColumns:
    raw = (await (await session.connection()).get_raw_connection()).driver_connection
    assert raw is not None
    hashes: list[np.ndarray[Any, Any]] = []
    await copy_rows(raw, _HASHES, (ids,), row_type(("key", ">i8")),
                    lambda rows: hashes.append(rows["key"].astype(np.int64)))
    keys = np.concatenate(hashes) if hashes else np.zeros(0, np.int64)
    orders = _Orders(keys, bar)
    if orders.unique:
        await copy_rows(raw, _BY_HASH, (today,), _ORDER_ROW, orders.add)
        return await asyncio.to_thread(orders.columns)
    await raw.execute("CREATE TEMP TABLE seg_ids (id text, k int4) ON COMMIT DROP")
    await raw.copy_records_to_table("seg_ids", records=zip(ids, range(len(ids)), strict=True))
    await raw.execute("ANALYZE seg_ids")
    await raw.execute("SET LOCAL work_mem = '256MB'")
    orders = _Orders(None, bar)
    await copy_rows(raw, _BY_JOIN, (today,), _ORDER_ROW, orders.add)
    return await asyncio.to_thread(orders.columns)


class _Orders:
    """Orders as they arrive, their customer turned from a key into an index: the key
    is the index itself, or the hash of the id (`keys` holds each customer's)."""

    def __init__(self, keys: np.ndarray[Any, Any] | None, bar: Any) -> None:
        self.bar = bar
        self.parts: dict[str, list[np.ndarray[Any, Any]]] = {f: [] for f in _FIELDS}
        self.order = self.sorted = None
        self.unique = True
        if keys is not None:
            self.order = np.argsort(keys, kind="stable")
            self.sorted = keys[self.order]
            self.unique = not bool((np.diff(self.sorted) == 0).any())

    def add(self, rows: np.ndarray[Any, Any]) -> None:
        key = rows["key"].astype(np.int64)
        keep = slice(None)
        if self.sorted is not None and self.order is not None:
            if not len(self.sorted):
                return
            pos = np.minimum(np.searchsorted(self.sorted, key), len(self.sorted) - 1)
            keep = self.sorted[pos] == key  # a customer added since: the next run's
            key = self.order[pos[keep]]
        for name, column in (("customer", key), ("day", rows["day"][keep] + _PG_EPOCH),
                             ("amount", rows["amount"][keep]), ("cost", rows["cost"][keep])):
            self.parts[name].append(np.asarray(column, dtype=np.int64))
        self.bar.update(len(rows))

    def columns(self) -> OrderColumns:
        """One array per field, each field's pieces let go as soon as it is joined."""
        out = []
        for f in _FIELDS:
            pieces = self.parts.pop(f)
            out.append(np.concatenate(pieces) if pieces else np.zeros(0, np.int64))
            pieces.clear()
        return OrderColumns(*out)
