"""What the quality routes share at the HTTP edge: roles, ids from the path, the caller."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from core import appkeys
from core.audit_views import viewer
from core.auth import Principal
from core.models import Role
from quality.evaluations import Actor
from quality.exceptions import NotFound

MANAGERS = (Role.supervisor, Role.admin)
STAFF = (Role.agent, *MANAGERS)


def row_id(request: web.Request, name: str) -> int:
    """A path id the database can hold; anything else is a 404, like a missing row."""
    raw = request.match_info[name]
    if not raw.isdigit() or not 1 <= int(raw) < 2**31:
        raise NotFound(f"no {name.removesuffix('_id')} {raw[:20]!r}")
    return int(raw)


def actor(request: web.Request, principal: Principal) -> Actor:
    return Actor(viewer(request, principal), principal.agent_id, principal.has(*MANAGERS))


def open_session(request: web.Request) -> AsyncSession:
    return request.app[appkeys.SESSIONS]()


def recording_roots(request: web.Request) -> tuple[Path, ...]:
    """Where recordings may be read: as the transcription worker reads them."""
    settings = request.app[appkeys.SETTINGS]
    roots = [settings.recordings_dir or Path("recordings")]
    if settings.ari_url:
        roots.append(settings.ari_recordings_dir)
    return tuple(roots)
