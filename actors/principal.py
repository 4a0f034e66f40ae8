"""Who is acting: the identity a verified JWT carries, passed to every actor call."""

from __future__ import annotations

import dataclasses
import re

ID_MAX_CHARS = 128
# What a user or tenant id may be made of: enough for UUIDs, e-mail addresses, URNs and slugs,
# and nothing that can forge a log line, hide in a terminal or collide inside a derived key.
SAFE_ID_CHARS = "letters, digits and . _ : @ -"
_SAFE_ID = re.compile(rf"[A-Za-z0-9._:@-]{{1,{ID_MAX_CHARS}}}")
SAFE_ID_PATTERN = f"^{_SAFE_ID.pattern}$"  # the same rule for JSON Schema (openapi.json)


def is_safe_id(value: object) -> bool:
    """A user or tenant id: ASCII letters, digits and ``._:@-``, 1 to 128 characters."""
    return isinstance(value, str) and _SAFE_ID.fullmatch(value) is not None


@dataclasses.dataclass(frozen=True)
class Principal:
    tenant_id: str
    user_id: str
    role: str | None = None
    name: str | None = None

    @property
    def is_tenant_admin(self) -> bool:
        """A tenant-wide administrator has admin rights in every conversation of the tenant."""
        return self.role == "admin"
