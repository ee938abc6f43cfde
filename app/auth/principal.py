"""Who is calling: an employee (JWT) or a service client (API key)."""

from __future__ import annotations

from dataclasses import dataclass

from app.auth.credentials import caller_name, grants
from app.auth.models import ApiKey
from app.org.models import Employee


@dataclass(frozen=True)
class Principal:
    employee: Employee | None = None
    api_key: ApiKey | None = None

    @property
    def actor(self) -> str:
        """How the audit trail names this caller."""
        if self.employee is not None:
            return caller_name(nip=self.employee.nip)
        assert self.api_key is not None
        return caller_name(key_id=self.api_key.id)

    def has_scope(self, scope: str) -> bool:
        return self.api_key is not None and grants(self.api_key.scopes, scope)
