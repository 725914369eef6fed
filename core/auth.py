"""Passwords (Argon2) and signed, expiring, revocable tokens (JWT)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Agent, ApiToken, Role, utcnow

log = logging.getLogger(__name__)
_hasher = PasswordHasher()
ALGORITHM = "HS256"
# Verifying against this keeps a login for an unknown user as slow as a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


class AuthError(Exception):
    code = "unauthorized"


class Forbidden(Exception):
    code = "forbidden"


class Busy(Exception):
    """Too many sign-ins are already waiting for a password check on this node."""

    code = "busy"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__("too many sign-ins at once; try again shortly")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Principal:
    """Who is calling: an agent, supervisor or admin user, or a telephony integration."""

    role: Role
    name: str
    token_id: str
    agent_id: int | None = None

    def has(self, *roles: Role) -> bool:
        return self.role in roles


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def find_user(session: AsyncSession, username: str) -> Agent | None:
    return await session.scalar(select(Agent).where(Agent.username == username))


def _timed_verify(password_hash: str | None, password: str) -> tuple[bool, float]:
    started = time.perf_counter()
    return verify_password(password_hash, password), time.perf_counter() - started


# Argon2 is slow on purpose, and libargon2 runs a hash's lanes in threads of its own
# (which inherit this priority). Five nice steps below the loop's thread they give way
# to it, so a flood of sign-ins slows the sign-ins rather than every socket on the node;
# the queue bound turns a node too busy to check passwords into quick 503s.
SIGNIN_NICE = 5


def _lower_priority() -> None:
    try:
        thread = threading.get_native_id()  # Linux takes a thread's id for a process's
        nice = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, nice + SIGNIN_NICE))
    except (AttributeError, OSError):  # not Linux, or not permitted: run at normal priority
        log.debug("argon2 threads run at normal priority")


class PasswordVerifier:
    """Argon2 checks in `concurrency` worker threads, never on the event loop.

    The threads are the bound on concurrent checks; at most `queue` more wait for one.
    Beyond that a check is refused at once (:class:`Busy`) rather than piling up.
    """

    def __init__(self, concurrency: int, queue: int) -> None:
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="argon2",
                                            initializer=_lower_priority)
        self._concurrency = concurrency
        self._capacity = concurrency + queue
        self._admitted = 0
        self._mean_s = 0.1  # moving average of one check, for Retry-After

    @property
    def admitted(self) -> int:
        """Checks running or waiting on this node."""
        return self._admitted

    async def verify(self, password_hash: str | None, password: str) -> bool:
        if self._admitted >= self._capacity:
            raise Busy(self._retry_after())
        self._admitted += 1
        try:
            ok, elapsed_s = await asyncio.get_running_loop().run_in_executor(
                self._executor, _timed_verify, password_hash, password)
        finally:
            self._admitted -= 1
        self._mean_s += (elapsed_s - self._mean_s) * 0.2
        return ok

    def _retry_after(self) -> int:
        return max(1, math.ceil(self._admitted * self._mean_s / self._concurrency))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


async def issue_token(
    session: AsyncSession, secret: str, *, role: Role, name: str,
    agent_id: int | None = None, ttl: dt.timedelta,
) -> str:
    token_id = secrets.token_hex(16)
    now = utcnow()
    expires = now + ttl
    session.add(ApiToken(id=token_id, name=name, role=role.value, agent_id=agent_id,
                         created_at=now, expires_at=expires))
    claims: dict[str, Any] = {"jti": token_id, "role": role.value, "sub": name, "iat": now,
                              "exp": expires}
    if agent_id is not None:
        claims["aid"] = agent_id
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(secret: str, token: str) -> Principal:
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["exp"]})
        return Principal(Role(claims["role"]), str(claims["sub"]), str(claims["jti"]),
                         claims.get("aid"))
    except (jwt.PyJWTError, KeyError, ValueError) as e:
        raise AuthError("invalid or expired token") from e


async def verify_token(session: AsyncSession, secret: str, token: str) -> Principal:
    principal = decode_token(secret, token)
    row = await session.get(ApiToken, principal.token_id)
    if row is None or row.revoked_at is not None:
        raise AuthError("token revoked")
    return principal


async def revoke(session: AsyncSession, *, token_id: str | None = None,
                 name: str | None = None) -> int:
    query = update(ApiToken).where(ApiToken.revoked_at.is_(None))
    if token_id:
        query = query.where(ApiToken.id == token_id)
    elif name:
        query = query.where(ApiToken.name == name, ApiToken.role == Role.telephony.value)
    else:
        raise ValueError("name a token id or an integration name")
    result = await session.execute(query.values(revoked_at=utcnow()))
    return cast(CursorResult[Any], result).rowcount or 0
