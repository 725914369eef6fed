"""Where a webhook may point: http(s), not this service, not a link-local address.

The host is resolved, so a name that resolves to 169.254.169.254 (a cloud's metadata
service) is refused like the address itself. Loopback and private addresses are
allowed: a CRM on the same network is the usual receiver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import cast
from urllib.parse import urlsplit

from webhooks.exceptions import BadWebhook

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
ANY_HOST = ("0.0.0.0", "::", "")
RESOLVE_S = 5.0


async def resolve(host: str, port: int) -> set[IP]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_S):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError as e:
        raise BadWebhook(f"{host!r} does not resolve within {RESOLVE_S:g} s") from e
    except (OSError, UnicodeError) as e:
        raise BadWebhook(f"{host!r} does not resolve: {e}") from e
    return {_plain(ipaddress.ip_address(cast(str, info[4][0]).split("%")[0])) for info in infos}


def _plain(ip: IP) -> IP:
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return mapped or ip


def split(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL; BadWebhook for anything else."""
    if not isinstance(url, str) or len(url) > 2048:
        raise BadWebhook("the url must be a string of at most 2048 characters")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise BadWebhook(f"the url must be http or https, not {parts.scheme or 'nothing'!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise BadWebhook(f"bad port in {url!r}") from e
    if not parts.hostname:
        raise BadWebhook(f"{url!r} names no host")
    if parts.username or parts.password:
        raise BadWebhook("put no credentials in the url; the secret signs each delivery")
    return parts.hostname, port


async def check(url: str, own: Iterable[tuple[str, int]]) -> None:
    """Refuse `url` if it is not http(s), resolves to a link-local, unspecified or
    multicast address, or reaches this service (`own`: the host and port it is
    reached at, listens on, or is published as)."""
    host, port = split(url)
    addresses = await resolve(host, port)
    for ip in addresses:
        if ip.is_link_local or ip.is_unspecified or ip.is_multicast:
            raise BadWebhook(f"{host} resolves to {ip}, a link-local or reserved address")
    for own_host, own_port in own:
        if own_port != port:
            continue
        if own_host in ANY_HOST:
            mine = {ip for ip in addresses if ip.is_loopback}
        else:
            try:
                mine = addresses & await resolve(own_host, own_port)
            except BadWebhook:
                continue
        if mine or host.lower() == own_host.lower():
            raise BadWebhook(f"{url} points at this service itself")
