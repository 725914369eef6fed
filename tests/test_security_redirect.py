"""After sign-in the page follows `?next=` only to a path of this site, in a real browser
(Debian's Chromium through Playwright), whatever form the off-site address takes."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from playwright.async_api import Page

from tests.browser import NewPage

pytestmark = [
    pytest.mark.browser,
]

OFF_SITE = ["/\\evil.example/path", "/\t/evil.example/path", "//evil.example/path",
            "/\n/evil.example", "https://evil.example/", "/\\/evil.example", " //evil.example",
            "javascript:alert(1)"]


async def sign_in_with_next(page: Page, center, next_: str) -> None:
    await page.goto(f"{center.url}/login?next={quote(next_, safe='')}")
    await page.fill("input[name=username]", "sue")
    await page.fill("input[name=password]", center.PASSWORD)
    await page.click("button[type=submit]")


async def test_sign_in_never_follows_next_off_the_site(center, new_page: NewPage):
    await center.add_agent("sue", role="supervisor")
    for form in OFF_SITE:
        page = await new_page()
        await sign_in_with_next(page, center, form)
        await page.wait_for_url(re.compile(re.escape(f"{center.url}/wallboard") + "$"))
        assert page.url == f"{center.url}/wallboard", form


async def test_sign_in_follows_next_to_a_path_of_the_site(center, new_page: NewPage):
    await center.add_agent("sue", role="supervisor")
    page = await new_page()
    await sign_in_with_next(page, center, "/wallboard?view=tiers#agents")
    await page.wait_for_url(f"{center.url}/wallboard?view=tiers#agents")
