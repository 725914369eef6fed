"""Bulk import of customers and their orders from CSV files (docs/csv-import.md).

Every row is validated in full before anything is written. A bad row is skipped
and reported by file, line and field; the good rows around it are kept. Rows are
written in batches of one transaction each, so nothing is ever half-written.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tqdm import tqdm

from core.db import session_scope
from core.models import Customer, CustomerPhone, Order
from crm.store import normalise_phone

log = logging.getLogger(__name__)

LIFECYCLE_STAGES = ("suspect", "prospect", "first_time", "repeat", "loyal", "inactive")
CUSTOMER_REQUIRED = ("id", "name", "phones")
ORDER_REQUIRED = ("customer_id", "date", "amount")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MAX_MONEY = Decimal("1e12")  # Numeric(14, 2)
_MAX_ORDER_ID = 2**31 - 1
# A batch that lost a race with a concurrent writer is validated again and retried.
_ATTEMPTS = 3


@dataclass(frozen=True)
class RowError:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


@dataclass
class FileCounts:
    imported: int = 0
    skipped: int = 0


@dataclass
class ImportReport:
    customers: FileCounts = field(default_factory=FileCounts)
    orders: FileCounts = field(default_factory=FileCounts)
    errors: list[RowError] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"customers: {self.customers.imported} imported, {self.customers.skipped} skipped",
            f"orders: {self.orders.imported} imported, {self.orders.skipped} skipped",
        ]
        return "\n".join(lines + [str(e) for e in self.errors])


Problems = list[tuple[str, str]]  # (field, message)


@dataclass
class _Sink:
    """Where one file's rejected rows are counted and reported."""

    file: str
    counts: FileCounts
    errors: list[RowError]

    def reject(self, line: int, problems: Problems) -> None:
        self.counts.skipped += 1
        self.errors.extend(RowError(self.file, line, f, m) for f, m in problems)


@dataclass(frozen=True)
class _Row:
    line: int
    values: dict[str, Any]


async def import_customers(
    maker: async_sessionmaker[AsyncSession],
    customers_csv: Path,
    orders_csv: Path | None,
    *,
    default_region: str = "CN",
    batch_size: int = 500,
    progress: bool = True,
) -> ImportReport:
    """Import customers, then their orders; orders may name customers already stored."""
    report = ImportReport()
    sink = _Sink(str(customers_csv), report.customers, report.errors)
    await _import_file(maker, customers_csv, _CustomerBatch(default_region), sink, batch_size,
                       progress)
    if orders_csv is not None:
        sink = _Sink(str(orders_csv), report.orders, report.errors)
        await _import_file(maker, orders_csv, _OrderBatch(), sink, batch_size, progress)
    log.info("import: customers %s, orders %s, %d errors",
             report.customers, report.orders, len(report.errors))
    return report


async def _import_file(
    maker: async_sessionmaker[AsyncSession], path: Path, kind: _Kind, sink: _Sink,
    batch_size: int, progress: bool,
) -> None:
    # Reads of a local file are short enough to do on the loop, between batch writes.
    with path.open("rb") as f, tqdm(total=os.fstat(f.fileno()).st_size, unit="B",
                                     unit_scale=True, desc=path.name, disable=not progress) as bar:
        first_error = len(sink.errors)
        rows = _records(_Lines(f, bar), kind.required, sink)
        for batch in _batches(rows, batch_size):
            parsed = kind.parse_all(batch, sink)
            if parsed:
                await _write_batch(maker, kind, parsed, sink)
    # Malformed rows are found while reading ahead of a batch; report in file order.
    sink.errors[first_error:] = sorted(sink.errors[first_error:], key=lambda e: e.line)


async def _write_batch(
    maker: async_sessionmaker[AsyncSession], kind: _Kind, parsed: list[_Row], sink: _Sink
) -> None:
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            async with session_scope(maker) as session:
                good, rejected = await kind.check(session, parsed)
                if good:
                    await kind.insert(session, good)
        except IntegrityError:
            if attempt == _ATTEMPTS:
                raise
            log.info("import batch raced a concurrent writer; checking it again")
            continue
        kind.accepted()
        sink.counts.imported += len(good)
        for line, problems in rejected:
            sink.reject(line, problems)
        return


# Reading ----------------------------------------------------------------------------


class _Lines:
    """A file's lines as UTF-8 text without the BOM, feeding a progress bar and
    noting which lines were not UTF-8 (they are decoded with U+FFFD, then rejected)."""

    def __init__(self, f: BinaryIO, bar: tqdm[Any]) -> None:
        self._f, self._bar = f, bar
        self.number = 0
        self.undecodable: set[int] = set()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raw = self._f.readline()
        if not raw:
            raise StopIteration
        self._bar.update(len(raw))
        self.number += 1
        if self.number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.undecodable.add(self.number)
            return raw.decode("utf-8", "replace")


def _records(lines: _Lines, required: tuple[str, ...], sink: _Sink) -> Iterator[_Row]:
    """Well-formed rows as {column: stripped value}; malformed ones go to `sink`."""
    reader = csv.reader(lines, strict=True)
    header = _header(reader, required, sink)
    if header is None:
        return
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            sink.reject(start, [("row", f"malformed CSV: {e}")])
            continue
        problem = _shape_problem(record, len(header), lines, start, reader.line_num)
        if problem:
            sink.reject(start, [("row", problem)])
        elif record:  # blank lines are not rows
            yield _Row(start, dict(zip(header, (v.strip() for v in record), strict=True)))


def _header(reader: Any, required: tuple[str, ...], sink: _Sink) -> list[str] | None:
    try:
        header = [name.strip().lower() for name in next(reader)]
    except (StopIteration, csv.Error):
        header = []
    missing = [name for name in required if name not in header]
    duplicated = sorted({name for name in header if name and header.count(name) > 1})
    if missing:
        message = f"missing required column(s) {', '.join(missing)}; found {header or 'none'}"
        sink.errors.append(RowError(sink.file, 1, "header", message))
    elif duplicated:
        sink.errors.append(RowError(sink.file, 1, "header", f"duplicate column(s) {duplicated}"))
    return None if missing or duplicated else header


def _shape_problem(record: list[str], width: int, lines: _Lines, start: int, end: int) -> str:
    if any(n in lines.undecodable for n in range(start, end + 1)):
        return "not valid UTF-8 text"
    if record and len(record) != width:
        return f"expected {width} columns as in the header, found {len(record)}"
    return ""


def _batches(rows: Iterable[_Row], size: int) -> Iterator[list[_Row]]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


# Field parsers: each returns the value or raises ValueError with the message. -------


Parser = Callable[[str], Any]


def _text(max_len: int, *, required: bool = False) -> Parser:
    def parse(raw: str) -> str | None:
        if not raw:
            if required:
                raise ValueError("is required")
            return None
        if len(raw) > max_len:
            raise ValueError(f"is longer than {max_len} characters")
        return raw

    return parse


def _phones(region: str) -> Parser:
    def parse(raw: str) -> tuple[str, ...]:
        numbers = [n.strip() for n in re.split(r"[;|]", raw) if n.strip()]
        if not numbers:
            raise ValueError("at least one phone number is required")
        e164 = {n: normalise_phone(n, region) for n in numbers}
        bad = [n for n, e in e164.items() if e is None]
        if bad:
            raise ValueError(f"not a valid phone number: {', '.join(map(repr, bad))} "
                             f"(numbers without a leading + are read as {region})")
        return tuple(dict.fromkeys(e for e in e164.values() if e))

    return parse


def _email(raw: str) -> str | None:
    if not raw:
        return None
    if len(raw) > 254 or not _EMAIL.fullmatch(raw):
        raise ValueError(f"{raw!r} is not a valid email address")
    return raw


def _tags(raw: str) -> list[str]:
    return list(dict.fromkeys(t.strip() for t in raw.split(";") if t.strip()))


def _stage(raw: str) -> str:
    if not raw:
        return "prospect"
    if raw.lower() not in LIFECYCLE_STAGES:
        raise ValueError(f"{raw!r} is not one of {', '.join(LIFECYCLE_STAGES)}")
    return raw.lower()


def _date(raw: str) -> dt.date:
    try:
        if _ISO_DATE.fullmatch(raw):
            return dt.date.fromisoformat(raw)
    except ValueError:
        pass
    raise ValueError(f"{raw!r} is not a date in YYYY-MM-DD form" if raw else "is required")


def _money(*, required: bool) -> Parser:
    def parse(raw: str) -> float:
        if not raw and not required:
            return 0.0
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise ValueError(f"{raw!r} is not a decimal number" if raw else "is required") from None
        if not value.is_finite() or value >= _MAX_MONEY:
            raise ValueError(f"{raw!r} is not a usable amount")
        if value < 0:
            raise ValueError(f"{raw!r} must not be negative")
        return float(round(value, 2))

    return parse


def _order_id(raw: str) -> int | None:
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) <= _MAX_ORDER_ID:
        raise ValueError(f"{raw!r} is not a positive integer order id")
    return int(raw)


def _parse(row: _Row, parsers: dict[str, Parser]) -> tuple[dict[str, Any], Problems]:
    values, problems = {}, []
    for name, parse in parsers.items():
        try:
            values[name] = parse(row.values.get(name, ""))
        except ValueError as e:
            problems.append((name, str(e)))
    return values, problems


# What each file holds, and how its rows are checked against the database. -------


class _Kind:
    required: tuple[str, ...]
    parsers: dict[str, Parser]

    def parse_all(self, batch: list[_Row], sink: _Sink) -> list[_Row]:
        """Rows whose fields all parse, with parsed values; the others go to `sink`."""
        parsed = []
        for row in batch:
            values, problems = _parse(row, self.parsers)
            if problems:
                sink.reject(row.line, problems)
            else:
                parsed.append(_Row(row.line, values))
        return parsed

    async def check(
        self, session: AsyncSession, rows: list[_Row]
    ) -> tuple[list[_Row], list[tuple[int, Problems]]]:
        """Rows that conflict with nothing, and the others with their problems; what the
        good rows claim (ids, phones) is kept pending until `accepted`."""
        raise NotImplementedError

    async def insert(self, session: AsyncSession, rows: list[_Row]) -> None:
        raise NotImplementedError

    def accepted(self) -> None:
        """The batch committed: later rows of the file are checked against its claims."""


class _CustomerBatch(_Kind):
    required = CUSTOMER_REQUIRED

    def __init__(self, region: str) -> None:
        self.parsers = {
            "id": _text(64, required=True), "name": _text(200, required=True),
            "phones": _phones(region), "email": _email, "company": _text(200),
            "tags": _tags, "lifecycle_stage": _stage,
        }
        self.id_lines: dict[str, int] = {}
        self.phone_owners: dict[str, tuple[str, int]] = {}  # phone -> (id, line)
        self._pending = self.id_lines, self.phone_owners

    async def check(
        self, session: AsyncSession, rows: list[_Row]
    ) -> tuple[list[_Row], list[tuple[int, Problems]]]:
        ids = {r.values["id"] for r in rows}
        phones = {p for r in rows for p in r.values["phones"]}
        stored_ids = set(await session.scalars(select(Customer.id).where(Customer.id.in_(ids))))
        stored_phones = dict((await session.execute(
            select(CustomerPhone.phone, CustomerPhone.customer_id)
            .where(CustomerPhone.phone.in_(phones))
        )).all())
        id_lines, phone_owners = dict(self.id_lines), dict(self.phone_owners)
        good, rejected = [], []
        for row in rows:
            problems = _customer_conflicts(row, id_lines, stored_ids, phone_owners, stored_phones)
            if problems:
                rejected.append((row.line, problems))
                continue
            good.append(row)
            id_lines[row.values["id"]] = row.line
            phone_owners.update((p, (row.values["id"], row.line)) for p in row.values["phones"])
        self._pending = id_lines, phone_owners
        return good, rejected

    async def insert(self, session: AsyncSession, rows: list[_Row]) -> None:
        customers = [{k: v for k, v in r.values.items() if k != "phones"} for r in rows]
        await session.execute(insert(Customer), customers)
        await session.execute(insert(CustomerPhone), [
            {"phone": phone, "customer_id": r.values["id"], "position": position}
            for r in rows for position, phone in enumerate(r.values["phones"])
        ])

    def accepted(self) -> None:
        self.id_lines, self.phone_owners = self._pending


def _customer_conflicts(
    row: _Row, id_lines: dict[str, int], stored_ids: set[str],
    phone_owners: dict[str, tuple[str, int]], stored_phones: dict[str, str],
) -> Problems:
    cid, problems = row.values["id"], []
    if cid in id_lines:
        problems.append(("id", f"customer id {cid!r} already appears on line {id_lines[cid]}"))
    elif cid in stored_ids:
        problems.append(("id", f"customer id {cid!r} already exists (an import never updates "
                               "customers)"))
    for phone in row.values["phones"]:
        if phone in phone_owners:
            owner, line = phone_owners[phone]
            problems.append(("phones", f"{phone} already belongs to customer {owner!r} "
                                       f"on line {line}"))
        elif phone in stored_phones:
            problems.append(("phones", f"{phone} already belongs to customer "
                                       f"{stored_phones[phone]!r}"))
    return problems


class _OrderBatch(_Kind):
    required = ORDER_REQUIRED

    def __init__(self) -> None:
        self.parsers = {
            "customer_id": _text(64, required=True), "date": _date,
            "amount": _money(required=True), "cost": _money(required=False),
            "order_id": _order_id,
        }
        self.id_lines: dict[int, int] = {}
        self._pending = self.id_lines

    async def check(
        self, session: AsyncSession, rows: list[_Row]
    ) -> tuple[list[_Row], list[tuple[int, Problems]]]:
        customer_ids = {r.values["customer_id"] for r in rows}
        order_ids = {r.values["order_id"] for r in rows} - {None}
        known = set(await session.scalars(select(Customer.id).where(Customer.id.in_(customer_ids))))
        stored = set(await session.scalars(select(Order.id).where(Order.id.in_(order_ids))))
        id_lines = dict(self.id_lines)
        good, rejected = [], []
        for row in rows:
            problems = _order_conflicts(row, known, id_lines, stored)
            if problems:
                rejected.append((row.line, problems))
            else:
                good.append(row)
                if row.values["order_id"] is not None:
                    id_lines[row.values["order_id"]] = row.line
        self._pending = id_lines
        return good, rejected

    async def insert(self, session: AsyncSession, rows: list[_Row]) -> None:
        with_id = [_order_values(r) for r in rows if r.values["order_id"] is not None]
        without_id = [_order_values(r) for r in rows if r.values["order_id"] is None]
        for values in (with_id, without_id):
            if values:
                await session.execute(insert(Order), values)
        if with_id and session.get_bind().dialect.name == "postgresql":
            # Explicit ids do not move the serial's sequence; without this the next
            # order inserted without an id would collide with an imported one.
            await session.execute(text(
                "SELECT setval(pg_get_serial_sequence('orders', 'id'),"
                " (SELECT max(id) FROM orders))"
            ))

    def accepted(self) -> None:
        self.id_lines = self._pending


def _order_conflicts(
    row: _Row, known: set[str], id_lines: dict[int, int], stored: set[int]
) -> Problems:
    cid, oid, problems = row.values["customer_id"], row.values["order_id"], []
    if cid not in known:
        problems.append(("customer_id", f"no customer with id {cid!r}"))
    if oid in id_lines:
        problems.append(("order_id", f"order id {oid} already appears on line {id_lines[oid]}"))
    elif oid in stored:
        problems.append(("order_id", f"order id {oid} already exists"))
    return problems


def _order_values(row: _Row) -> dict[str, Any]:
    v = row.values
    values = {"customer_id": v["customer_id"], "ordered_on": v["date"], "amount": v["amount"],
              "cost": v["cost"]}
    if v["order_id"] is not None:
        values["id"] = v["order_id"]
    return values
