"""Behind a reverse proxy: the client address comes from X-Forwarded-For only when the
direct peer is a trusted proxy (CALLCENTER_TRUSTED_PROXIES), so a client cannot write
its own address into the audit log or slip past the per-address sign-in limit."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from core.models import AuditEntry
from core.settings import Settings
from core.web import forwarded_client
from tests.conftest import make_settings
from tests.rest import PASSWORD, request

PROXY = ("127.0.0.2", 0)  # the service below trusts this address, and only this one
CLIENT = ("127.0.0.3", 0)  # a client connecting directly
TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.0.2.1"))


@pytest.fixture
def settings(database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, redis_url, redis_prefix, tmp_path,
                         trusted_proxies=("127.0.0.2",))


# Choosing the address ---------------------------------------------------------------


@pytest.mark.parametrize(("peer", "forwarded_for", "expected"), [
    # Not from a trusted proxy: the header is the client's own words.
    ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
    # One trusted proxy: the address it appended.
    ("10.0.0.5", ["198.51.100.1"], "198.51.100.1"),
    # Whatever the client sent itself stands left of it and is ignored.
    ("10.0.0.5", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),
    # A chain of trusted proxies, one of them sending its own header line.
    ("10.0.0.5", ["6.6.6.6, 198.51.100.1", "192.0.2.1 , 10.1.2.3"], "198.51.100.1"),
    # Every hop trusted: the client is itself on a trusted network.
    ("10.0.0.5", ["10.9.9.9, 192.0.2.1"], "10.9.9.9"),
    # No header, an empty one, or garbage the proxy passed on: the last vouched address.
    ("10.0.0.5", [], "10.0.0.5"),
    ("10.0.0.5", [""], "10.0.0.5"),
    ("10.0.0.5", ["198.51.100.1, not-an-address, 10.0.0.7"], "10.0.0.7"),
    # A dual-stack socket shows an IPv4 proxy as IPv4-mapped IPv6.
    ("::ffff:10.0.0.5", ["2001:db8::1"], "2001:db8::1"),
    # A Unix socket has no address to trust.
    (None, ["198.51.100.1"], None),
])
def test_the_client_is_the_rightmost_address_no_trusted_proxy_wrote(peer, forwarded_for,
                                                                      expected):
    assert forwarded_client(peer, forwarded_for, TRUSTED) == expected


def test_nothing_is_trusted_by_default():
    assert forwarded_client("10.0.0.5", ["198.51.100.1"], Settings(
        secret_key="k").trusted_proxies) == "10.0.0.5"


def test_trusted_proxies_are_read_as_a_comma_separated_list(monkeypatch):
    monkeypatch.setenv("CALLCENTER_TRUSTED_PROXIES", "172.31.250.10, 10.0.0.0/8,::1")
    assert [str(n) for n in Settings(secret_key="k").trusted_proxies] == [
        "172.31.250.10/32", "10.0.0.0/8", "::1/128"]
    monkeypatch.setenv("CALLCENTER_TRUSTED_PROXIES", "10.0.0.1/8")  # host bits set: a typo
    with pytest.raises(ValidationError):
        Settings(secret_key="k")


# The audit log ----------------------------------------------------------------------


async def test_a_spoofed_forwarded_header_from_an_untrusted_peer_is_not_audited(center):
    token = await _viewer(center)
    await request(center, "GET", "/api/v1/customers/C1", token, source=CLIENT,
                  headers={"X-Forwarded-For": "198.51.100.1"})
    assert await _audited_from(center) == ["127.0.0.3"]


async def test_the_audit_log_records_the_client_behind_a_trusted_proxy(center):
    token = await _viewer(center)
    await request(center, "GET", "/api/v1/customers/C1", token, source=PROXY,
                  headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.7"})
    assert await _audited_from(center) == ["203.0.113.7"]


async def _viewer(center: Any) -> str:
    await center.add_customer("C1", "Zhang Wei", "+8613800000001")
    return await center.login_token("sue", "supervisor")


async def _audited_from(center: Any) -> list[str | None]:
    async with center.sessions() as session:
        return list(await session.scalars(select(AuditEntry.remote).order_by(AuditEntry.id)))


# The per-address sign-in limit ------------------------------------------------------


async def test_sign_in_limit_locks_the_client_behind_the_proxy_not_the_proxy(center):
    await center.add_agent("amy")
    attacker = {"X-Forwarded-For": "203.0.113.7"}
    for n in range(5):
        assert (await _login(center, f"guess-{n}", "wrong", source=PROXY,
                             headers=attacker))[0] == 401
    assert (await _login(center, "amy", source=PROXY, headers=attacker))[0] == 429
    neighbour = {"X-Forwarded-For": "203.0.113.8"}
    assert (await _login(center, "amy", source=PROXY, headers=neighbour))[0] == 200


async def test_a_client_cannot_escape_the_sign_in_limit_by_changing_the_header(center):
    await center.add_agent("amy")
    for n in range(5):
        spoofed = {"X-Forwarded-For": f"198.51.100.{n}"}
        assert (await _login(center, f"guess-{n}", "wrong", source=CLIENT,
                             headers=spoofed))[0] == 401
    fresh = {"X-Forwarded-For": "198.51.100.99"}
    assert (await _login(center, "amy", source=CLIENT, headers=fresh))[0] == 429


async def _login(center: Any, username: str, password: str = PASSWORD, *,
                 source: tuple[str, int], headers: dict[str, str]) -> tuple[int, Any]:
    return await request(center, "POST", "/api/v1/login", source=source, headers=headers,
                         json={"username": username, "password": password})
