"""Without Chromium a browser test is skipped in an ordinary run, and fails where the run
must be complete (./test.sh)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def run_without_chromium(tmp_path: Path, **flags: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CALLCENTER_REQUIRE_BROWSER", "CALLCENTER_REQUIRE_POSTGRES",
                        "CALLCENTER_TEST_POSTGRES_URL")}
    env.update(CALLCENTER_CHROMIUM=str(tmp_path / "no-chromium"), **flags)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
        "tests/test_security_redirect.py", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_a_browser_test_without_chromium_is_skipped_saying_why(tmp_path):
    code, out = await run_without_chromium(tmp_path)

    assert code == 0, out
    assert "skipped" in out and "needs Debian's chromium package" in out, out


async def test_a_browser_test_without_chromium_fails_where_the_run_must_be_complete(tmp_path):
    code, out = await run_without_chromium(tmp_path, CALLCENTER_REQUIRE_BROWSER="1")

    assert code == 1, out
    assert "no-chromium is missing" in out and "skipped" not in out, out
