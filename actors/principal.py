"""Who is acting: the identity a verified JWT carries, passed to every actor call."""

from __future__ import annotations

import dataclasses


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
