"""Reports and call detail records over REST, for supervisors and admins.

`GET /api/v1/reports/{center|queues|tiers|agents|customers}` and `GET /api/v1/cdr` answer JSON,
or CSV with `Accept: text/csv` or `format=csv`. Every answer is an export of call
data: it is in the audit log (action ``report`` or ``cdr``) before it is returned.
"""

from __future__ import annotations

import asyncio
import csv
import io
from functools import partial
from typing import Any

import orjson
from aiohttp import web

from core import appkeys
from core.audit import csv_cell
from core.audit_views import viewed
from core.models import Role
from core.web import authenticate
from reports import agents, cdr, customers
from reports.periods import BadReport, parse_range, parse_zone
from reports.queries import Scope, interval_report

CDR_PAGE_DEFAULT = 100


def wants_csv(request: web.Request) -> bool:
    fmt = request.query.get("format")
    if fmt not in (None, "", "csv", "json"):
        raise BadReport(f"unknown format {fmt[:20]!r}: use csv or json")
    if fmt:
        return fmt == "csv"
    return "text/csv" in request.headers.get("Accept", "")


async def report(request: web.Request) -> web.StreamResponse:
    await authenticate(request, Role.supervisor, Role.admin)
    settings, query = request.app[appkeys.SETTINGS], request.query
    scope = Scope(request.match_info["scope"])
    as_csv = wants_csv(request)
    rng = parse_range(query.get("from"), query.get("to"), query.get("interval"),
                      parse_zone(query.get("timezone"), settings.zone), settings.report_max_days)
    queue = query.get("queue") or None
    if queue is not None and ("\x00" in queue or len(queue) > 64):
        raise BadReport("queue must be a queue name")
    if scope is Scope.agents:
        work = partial(agents.agent_report, rng=rng, center=settings.center_timezone)
    elif scope is Scope.customers:
        work = partial(customers.customer_report, rng=rng,
                       formula=settings.service_level_formula)
    else:
        work = partial(interval_report, rng=rng, scope=scope,
                       formula=settings.service_level_formula, queue=queue)
    result = await request.app[appkeys.READ](work)
    await viewed(request, [("report", scope.value)], action="report",
                 format="csv" if as_csv else "json", queue=queue, **rng.bounds())
    # In a worker thread: a quarter's agent report (18,000 rows) is tens of milliseconds
    # of serializing, which would stall the node's other requests on the loop.
    if as_csv:
        return await asyncio.to_thread(csv_response, result["rows"],
                                       f"report-{scope.value}.csv")
    body = await asyncio.to_thread(json_body, result)
    return web.Response(body=body, content_type="application/json")


def json_body(result: dict[str, Any]) -> bytes:
    """orjson: a quarter's agent report (18,000 rows) serializes several times faster
    than with json.dumps (bench/README.md)."""
    return orjson.dumps(result)


async def call_records(request: web.Request) -> web.StreamResponse:
    await authenticate(request, Role.supervisor, Role.admin)
    settings, query = request.app[appkeys.SETTINGS], request.query
    as_csv = wants_csv(request)
    rng = parse_range(query.get("from"), query.get("to"), None,
                      parse_zone(query.get("timezone"), settings.zone), settings.report_max_days)
    limit = _limit(query.get("limit"))
    records, cursor = await request.app[appkeys.READ](partial(
        cdr.page, since=rng.since, until=rng.until, limit=limit,
        cursor=query.get("cursor") or None))
    await viewed(request, [("cdr", f"{rng.bounds()['from']}/{rng.bounds()['to']}")],
                 action="cdr", format="csv" if as_csv else "json", records=len(records))
    if as_csv:
        response = csv_response(records, "cdr.csv", cdr.COLUMNS)
        if cursor:
            response.headers["X-Next-Cursor"] = cursor
        return response
    return web.json_response({"records": records, "next_cursor": cursor})


def _limit(raw: str | None) -> int:
    if not raw:
        return CDR_PAGE_DEFAULT
    try:
        limit = int(raw)
    except ValueError:
        raise BadReport("limit must be a whole number") from None
    if not 1 <= limit <= cdr.PAGE_MAX:
        raise BadReport(f"limit must be between 1 and {cdr.PAGE_MAX}")
    return limit


def csv_response(rows: list[dict[str, Any]], filename: str,
                 columns: tuple[str, ...] | None = None) -> web.Response:
    columns = columns or (tuple(rows[0]) if rows else ("period",))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(csv_cell(row.get(c)) for c in columns)
    return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/reports/{scope:center|queues|tiers|agents|customers}", report)
    app.router.add_get("/api/v1/cdr", call_records)
