"""Wiring of quality evaluations into the app: the REST routes and recording playback."""

from __future__ import annotations

from aiohttp import web

from quality import playback, views


def setup(app: web.Application) -> None:
    views.setup(app)
    playback.setup(app)
