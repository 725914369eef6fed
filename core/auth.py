"""Passwords (Argon2) and signed, expiring, revocable tokens (JWT)."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Agent, ApiToken, Role, utcnow

_hasher = PasswordHasher()
ALGORITHM = "HS256"
# Verifying against this keeps a login for an unknown user as slow as a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


class AuthError(Exception):
    code = "unauthorized"


class Forbidden(Exception):
    code = "forbidden"


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


async def authenticate(session: AsyncSession, username: str, password: str) -> Agent | None:
    agent = await session.scalar(select(Agent).where(Agent.username == username))
    ok = verify_password(agent.password_hash if agent else None, password)
    return agent if ok and agent is not None and agent.active else None


async def issue_token(
    session: AsyncSession, secret: str, *, role: Role, name: str,
    agent_id: int | None = None, ttl: dt.timedelta,
) -> str:
    token_id = secrets.token_hex(16)
    now = utcnow()
    expires = now + ttl
    session.add(ApiToken(id=token_id, name=name, role=role.value, agent_id=agent_id,
                         created_at=now, expires_at=expires))
    claims = {"jti": token_id, "role": role.value, "sub": name, "iat": now, "exp": expires}
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
    return result.rowcount or 0
