"""The JWT contract: HS256 with a pinned algorithm, ``exp`` required, tenant and user claims."""

from __future__ import annotations

import time

import jwt

from actors.errors import Unauthorized
from actors.principal import ID_MAX_CHARS, SAFE_ID_CHARS, Principal, is_safe_id
from config import Settings


def decode_token(token: str | None, settings: Settings) -> Principal:
    """Verify ``token`` and return who it names; ``Unauthorized`` with the reason otherwise."""
    if not token:
        raise Unauthorized("A token is required")
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[settings.jwt_algorithm],
            options={"require": ["exp", "tenant_id"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The token has expired") from None
    except jwt.InvalidTokenError as error:
        raise Unauthorized(f"Invalid token: {error}") from None
    user_id = claims.get("user_id", claims.get("sub"))
    tenant_id = claims.get("tenant_id")
    for name, value in (("user_id", user_id), ("tenant_id", tenant_id)):
        if not is_safe_id(value):
            raise Unauthorized(f"Invalid token: claim {name!r} must be 1 to {ID_MAX_CHARS} of {SAFE_ID_CHARS}")
    role = claims.get("role")
    name = claims.get("name")
    return Principal(
        tenant_id=tenant_id,
        user_id=user_id,
        role=role if isinstance(role, str) else None,
        name=name if isinstance(name, str) else None,
    )


def issue_token(settings: Settings, *, tenant_id: str, user_id: str, role: str | None = None, ttl_secs: int = 3600, name: str | None = None) -> str:
    """A token for development and tests, signed like the gateway expects."""
    claims = {"user_id": user_id, "tenant_id": tenant_id, "exp": int(time.time()) + ttl_secs}
    if role:
        claims["role"] = role
    if name:
        claims["name"] = name
    return jwt.encode(claims, settings.jwt_secret, algorithm=settings.jwt_algorithm)
