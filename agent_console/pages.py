"""The browser pages: sign-in, agent console, wallboard, reports, quality, and their static
files.

Every static file is served at a URL carrying a hash of its content
(`/static/js/console.3f9c2a1b.js`) with a one-year immutable cache; the pages
themselves are never cached, so a deploy is picked up on the next load. JS
modules import each other by plain relative paths; an import map in each page
points those paths at the hashed URLs.

Pages hold no data and no secrets: they sign in through the REST API and keep
the token in the tab's sessionStorage. Which role may see what is enforced by
the API and the websockets; a page opened by the wrong role sends the browser
to `/forbidden`, a 403 page.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
IMMUTABLE = "public, max-age=31536000, immutable"
PAGES = {"/login": "login.html", "/console": "console.html", "/wallboard": "wallboard.html",
         "/reports": "reports.html", "/quality": "quality.html", "/admin": "admin.html",
         "/webhooks": "webhooks.html"}
_ASSET = re.compile(r"\{\{\s*asset\s+'([^']+)'\s*\}\}")
_HASHED = re.compile(r"^(?P<stem>.+)\.(?P<digest>[0-9a-f]{10})(?P<suffix>\.[a-z0-9]+)$")


@dataclass(frozen=True)
class Assets:
    """The static files, read once at start-up, by their plain and hashed paths."""

    files: dict[str, bytes]  # plain relative path -> content
    hashed: dict[str, str]  # plain relative path -> hashed relative path

    @classmethod
    def load(cls, root: Path = STATIC) -> Assets:
        files = {p.relative_to(root).as_posix(): p.read_bytes()
                 for p in sorted(root.rglob("*")) if p.is_file()}
        return cls(files, {path: _hashed_name(path, data) for path, data in files.items()})

    def url(self, path: str) -> str:
        return f"/static/{self.hashed[path]}"

    def import_map(self) -> str:
        modules = {f"/static/{p}": self.url(p) for p in self.files if p.endswith(".js")}
        return json.dumps({"imports": modules}, indent=1, sort_keys=True)

    def find(self, requested: str) -> tuple[bytes, bool] | None:
        """The file's content, and whether the URL named its current hash."""
        match = _HASHED.match(requested)
        if match:
            plain = f"{match['stem']}{match['suffix']}"
            if self.hashed.get(plain) == requested:
                return self.files[plain], True
        if requested in self.files:
            return self.files[requested], False
        return None


def _hashed_name(path: str, data: bytes) -> str:
    stem, dot, suffix = path.rpartition(".")
    digest = hashlib.sha256(data).hexdigest()[:10]
    return f"{stem}.{digest}.{suffix}" if dot else f"{path}.{digest}"


@dataclass(frozen=True)
class Page:
    html: bytes
    csp: str


def render(template: str, assets: Assets) -> Page:
    """Fill in asset URLs and the import map; allow exactly that inline script."""
    source = (TEMPLATES / template).read_text(encoding="utf-8")
    body = _ASSET.sub(lambda m: assets.url(m.group(1)), source)
    import_map = assets.import_map()
    body = body.replace("{{ importmap }}", f'<script type="importmap">{import_map}</script>')
    digest = base64.b64encode(hashlib.sha256(import_map.encode()).digest()).decode()
    csp = ("default-src 'self'; "
           f"script-src 'self' 'sha256-{digest}'; "
           "style-src 'self'; img-src 'self' data:; connect-src 'self'; "
           "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
    return Page(body.encode("utf-8"), csp)


def _page_response(page: Page, status: int = 200) -> web.Response:
    return web.Response(body=page.html, status=status, content_type="text/html",
                        charset="utf-8", headers={
                            "Cache-Control": "no-cache",
                            "Content-Security-Policy": page.csp,
                            "X-Content-Type-Options": "nosniff",
                            "Referrer-Policy": "no-referrer",
                            "X-Frame-Options": "DENY"})


class Pages:
    def __init__(self, assets: Assets) -> None:
        self.assets = assets
        self.pages = {path: render(name, assets) for path, name in PAGES.items()}
        self.forbidden = render("forbidden.html", assets)

    async def page(self, request: web.Request) -> web.Response:
        return _page_response(self.pages[request.path])

    async def forbidden_page(self, request: web.Request) -> web.Response:
        return _page_response(self.forbidden, status=403)

    async def home(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/console")

    async def static(self, request: web.Request) -> web.Response:
        found = self.assets.find(request.match_info["path"])
        if found is None:
            raise web.HTTPNotFound()
        data, immutable = found
        path = request.match_info["path"]
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        charset = "utf-8" if content_type.startswith("text/") else None
        return web.Response(body=data, content_type=content_type, charset=charset,
                            headers={"Cache-Control": IMMUTABLE if immutable else "no-cache",
                                     "X-Content-Type-Options": "nosniff"})


def setup(app: web.Application) -> None:
    pages = Pages(Assets.load())
    app.router.add_get("/", pages.home)
    for path in PAGES:
        app.router.add_get(path, pages.page)
    app.router.add_get("/forbidden", pages.forbidden_page)
    app.router.add_get("/static/{path:.+}", pages.static)
