"""The Reports page in Debian's Chromium: date range and interval pickers, tables, an
SVG chart, a CSV download, English and Chinese. Calls go through the real call path.

Screenshots go to docs/screenshots/ with CALLCENTER_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser import sign_in
from tests.conftest import make_settings
from tests.test_reports import abandoned, answered, set_clock
from tests.test_reports import at as at_time
from tests.test_reports_customers import complaints, textbook_base, tier_history

pytestmark = [
    pytest.mark.browser,
]


@pytest.fixture
def settings(database_url, redis_url, redis_prefix, tmp_path):
    return make_settings(database_url, redis_url, redis_prefix, tmp_path,
                         center_timezone="Asia/Shanghai", ring_timeout_s=3600.0,
                         wrap_up_s=3600.0, agent_away_s=10.0**7)


async def three_days_of_calls(center) -> None:
    await center.add_customer("=gold", "Gold", "+8613800000101", tier="gold")
    amy = await center.agent("amy")
    set_clock(center, at(-2, "08:00:00"))
    await amy.available()
    ivr = await center.ivr()
    n = 0
    for day, waits in ((-2, (5, 12, 40)), (-1, (3, 25)), (0, (8, 9, 10, 30))):
        for i, wait in enumerate(waits):
            n += 1
            start = f"09:{i * 10:02d}:00"
            ani = "+8613800000101" if n == 2 else f"+86138000002{n:02d}"
            await answered(center, ivr, amy, f"k{n}", ani, (start, day),
                           (f"09:{i * 10:02d}:{wait:02d}", day), (f"09:{i * 10 + 5:02d}:00", day))
        await amy.not_ready()
        n += 1
        await abandoned(center, ivr, f"k{n}", f"+86138000002{n:02d}", "10:00:00", "10:00:30",
                        days=day)
        await amy.available()


def at(days: int, hhmmss: str) -> float:
    return at_time(hhmmss, days)


async def test_supervisor_reads_charts_and_tables_and_downloads_csv_in_two_languages(
        center, new_page, shoot, tmp_path):  # noqa: F811
    await three_days_of_calls(center)
    await center.add_agent("sue", role="supervisor")
    page = await new_page(width=1500, height=1000)
    await sign_in(page, center, "sue", lands_on="/wallboard")
    await page.goto(f"{center.url}/reports#from=2026-03-08&to=2026-03-10&interval=day")
    rows = page.locator("#rp-table tbody tr")
    await expect(rows).to_have_count(3)
    await expect(rows.nth(2)).to_contain_text("2026-03-10")
    await expect(page.locator("#rp-zone")).to_have_text("Time zone: Asia/Shanghai")
    await expect(page.locator("#chart svg > rect.bar.answered")).to_have_count(3)
    await expect(page.locator("#chart path.sl-line")).to_have_count(1)
    await shoot(page, "reports.png")

    async with page.expect_download() as info:
        await page.click("#rp-csv")
    download = await info.value
    path = tmp_path / "report.csv"
    await download.save_as(path)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("period,scope,offered,answered") and len(lines) == 4

    await page.select_option("#rp-scope", "tiers")
    await page.click("#rp-show")
    await expect(page.locator("#rp-table thead")).to_contain_text("Tier")
    await expect(page.locator("#rp-table tbody")).to_contain_text("gold")

    await page.select_option("#rp-scope", "agents")  # Amy, one row a day
    await page.click("#rp-show")
    await expect(page.locator("#rp-table tbody tr")).to_have_count(3)
    for column in ("AHT", "CSAT", "Not ready by reason", "Occupancy"):
        await expect(page.locator("#rp-table thead")).to_contain_text(column)
    await expect(page.locator("#rp-table tbody tr").nth(2)).to_contain_text("Amy")
    await shoot(page, "reports-agents.png")
    await page.select_option("#rp-scope", "tiers")
    await page.click("#rp-show")
    await expect(page.locator("#rp-table thead")).to_contain_text("Tier")

    await page.click("button[data-lang=zh]")
    await expect(page.locator("h1")).to_have_text("历史报表")
    await expect(page.locator("#rp-table thead")).to_contain_text("服务水平")
    await page.select_option("#rp-scope", "center")
    await page.select_option("#rp-interval", "15m")
    await page.fill("#rp-from", "2026-03-10")
    await page.click("#rp-show")
    await expect(page.locator("#rp-table tbody tr")).to_have_count(4)  # 09:00 to 10:00
    await shoot(page, "reports-zh.png")

    await page.fill("#rp-from", "2026-03-11")
    await page.click("#rp-show")
    await expect(page.locator("#rp-error")).to_contain_text("to must be after from")


async def test_an_agent_opening_reports_gets_the_403_page(center, new_page):  # noqa: F811
    await center.add_agent("amy")
    page = await new_page()
    await sign_in(page, center, "amy")
    await page.goto(f"{center.url}/reports")
    await page.wait_for_url("**/forbidden")


async def surveyed_calls(center) -> None:
    """Four answered calls in March with their survey answers: 5 and 2 in the week of
    2 March (2026-W10), 4 and 5 in the week of 9 March."""
    amy = await center.agent("amy")
    set_clock(center, at(-9, "08:00:00"))
    await amy.available()
    ivr = await center.ivr()
    for n, (day, score) in enumerate(((-8, 5), (-7, 2), (-1, 4), (0, 5))):
        call_id = f"s{n}"
        await answered(center, ivr, amy, call_id, f"+861380000030{n}", ("09:00:00", day),
                       ("09:00:05", day), ("09:03:00", day))
        await ivr.event("survey.result", call_id, score=score)
        await amy.request("wrapup.done", call_id=call_id, disposition="resolved")
        await amy.inbox.expect("agent.state", state="available")


async def test_supervisor_reads_the_customer_report_in_two_languages(
        center, new_page, shoot):
    await textbook_base(center.sessions)
    await tier_history(center.sessions)
    await complaints(center.sessions)
    await surveyed_calls(center)
    await center.add_agent("sue", role="supervisor")
    page = await new_page(width=1500, height=1400)
    await sign_in(page, center, "sue", lands_on="/wallboard")
    await page.goto(f"{center.url}/reports#scope=customers&from=2026-03-01&to=2026-03-31"
                    "&interval=week")

    await expect(page.locator("#kpi-churn-absolute .kpi-value")).to_have_text("10.0%")
    await expect(page.locator("#kpi-churn-relative .kpi-value")).to_have_text("2.0%")
    await expect(page.locator("#kpi-customers-lost .kpi-value")).to_have_text("100")
    await expect(page.locator("#rp-churn-period")).to_contain_text("2026-03-01")
    moves = page.locator("#rp-tier-moves tbody tr")
    await expect(moves).to_have_count(2)
    await expect(moves.nth(1)).to_contain_text("silver")
    categories = page.locator("#rp-categories tbody tr")
    await expect(categories).to_have_count(2)
    billing = page.locator("#rp-categories tbody tr", has_text="billing_refund")
    await expect(billing).to_contain_text("50.0%")
    await expect(billing).to_contain_text("20.0 h")
    # the trend: by week; the satisfied share's line and the complaints' bars
    week = page.locator("#rp-table tbody tr").first
    await expect(week).to_contain_text("2026-W10")
    await expect(week).to_contain_text("3.50")  # 5 and 2
    await expect(week).to_contain_text("50.0%")  # satisfied: one of two
    await expect(page.locator("#rp-table thead")).to_contain_text("Survey answers")
    await expect(page.locator("#chart path.sl-line")).to_have_count(1)
    await expect(page.locator("#chart line.target")).to_have_count(0)
    await expect(page.locator("#chart .legend")).to_contain_text("Complaints opened")
    await shoot(page, "reports-customers.png")

    await page.click("button[data-lang=zh]")
    await expect(page.locator("#kpi-churn-absolute .kpi-label")).to_have_text("流失率")
    await expect(page.locator("#rp-categories thead")).to_contain_text("时限内解决率")
    await expect(page.locator("#rp-table-title")).to_have_text("各时段满意度与投诉")

    await page.select_option("#rp-scope", "center")
    await page.click("#rp-show")
    await expect(page.locator("#rp-customers")).to_be_hidden()
    await expect(page.locator("#rp-table thead")).to_contain_text("服务水平")
