import pytest

pytestmark = pytest.mark.anyio


async def test_nul(client, org):
    for path in ("/api/v1/api-keys/%00", "/api/v1/employees/%00"):
        r = await client.get(path, headers=org.admin)
        print("GET", path, r.status_code)
    r = await client.delete("/api/v1/api-keys/%00", headers=org.admin)
    print("DEL", r.status_code)
    try:
        r = await client.get(
            "/api/v1/authorizations/check?nip=1&workspace_code=X",
            headers={"X-API-Key": "izs_\x00_b"},
        )
        print("KEY", r.status_code)
    except Exception as e:
        print("httpx refuses", e)
    r = await client.get(
        "/api/v1/authorizations/check?nip=1&workspace_code=X", headers={"X-API-Key": "izs_\xe9_b"}
    )
    print("KEY latin", r.status_code)
