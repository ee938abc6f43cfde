"""The service answers as the bootstrap admin on both databases."""

from __future__ import annotations

import httpx
import pytest

from tests.support import ADMIN_NIP, Org

pytestmark = pytest.mark.anyio


async def test_bootstrap_admin_reads_me(client: httpx.AsyncClient, org: Org) -> None:
    response = await client.get("/api/v1/me", headers=org.admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["nip"] == ADMIN_NIP
    assert body["roles"] == ["admin"]
    assert body["heads"] == []


async def test_unit_with_head_is_listed(client: httpx.AsyncClient, org: Org) -> None:
    unit, head = await org.unit_with_head()
    response = await client.get("/api/v1/me", headers=org.as_(head["nip"]))
    assert response.json()["heads"] == [unit["code"]]
