"""The browser tests' shared fixtures (a pytest plugin, loaded by tests/conftest.py):
Debian's Chromium driven by Playwright, pages that fail the test on a JavaScript error
or a Content-Security-Policy violation, and screenshots.

Without /usr/bin/chromium (or CALLCENTER_CHROMIUM) a browser test is skipped, saying
so; where the run must be complete (./test.sh sets CALLCENTER_REQUIRE_BROWSER, the
helpers' runs CALLCENTER_REQUIRE_POSTGRES) it fails instead.

Screenshots go into docs/screenshots/ when CALLCENTER_UPDATE_SCREENSHOTS=1 (so an
ordinary run leaves the tree clean), else into the test's temporary directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

CHROMIUM = Path(os.environ.get("CALLCENTER_CHROMIUM") or "/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
STRICT = any(os.environ.get(flag, "").lower() in {"1", "true"}
             for flag in ("CALLCENTER_REQUIRE_BROWSER", "CALLCENTER_REQUIRE_POSTGRES"))

NewPage = Callable[..., Awaitable[Page]]

# How long an `expect` waits for its condition. Playwright's 5 s was too short in a CI
# run of two suites at once (2 cores, load 6): a complaint's POST had not come back
# within it (the form's buttons were still disabled, no error). These tests check what
# the page shows, not how fast; latency has its own benchmarks (bench/). A condition
# that never holds still fails, after 20 s.
EXPECT_TIMEOUT_MS = 20_000
expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not HAVE_CHROMIUM:
        if STRICT:
            pytest.fail(f"{CHROMIUM} is missing (Debian's chromium package): the browser "
                        "tests must run here")
        pytest.skip("needs Debian's chromium package")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        await browser.close()


@pytest.fixture
async def new_page(browser: Browser) -> AsyncIterator[NewPage]:
    """Pages in their own browser contexts (separate sessionStorage), each failing the
    test on a JavaScript error or a Content-Security-Policy violation."""
    problems: list[str] = []
    contexts = []

    async def make(width: int = 1440, height: int = 900) -> Page:
        context = await browser.new_context(viewport={"width": width, "height": height},
                                            locale="en-US")
        contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("console", lambda m: problems.append(f"console: {m.text}")
                if m.type == "error" and "Content Security Policy" in m.text else None)
        return page

    yield make
    for context in contexts:
        await context.close()
    assert not problems, problems


@pytest.fixture
def shoot(tmp_path: Path) -> Callable[[Page, str], Awaitable[None]]:
    folder = SHOTS if os.environ.get("CALLCENTER_UPDATE_SCREENSHOTS") == "1" else tmp_path

    async def take(page: Page, name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(folder / name), full_page=True)

    return take


async def sign_in(page: Page, center: Any, username: str, lands_on: str = "/console") -> None:
    await page.goto(f"{center.url}/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", center.PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(re.escape(lands_on)))


async def go_available(page: Page) -> None:
    await expect(page.locator("#btn-available")).to_be_enabled()
    await page.click("#btn-available")
    await expect(page.locator("#state-label")).to_have_text("Available")
