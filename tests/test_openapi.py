"""The OpenAPI document tells the truth (docs/RULES.md #conventions, STYLE 5).

Every /api/v1 operation declares the problems any request can meet (401, 422,
500) as `application/problem+json`; creates declare 201; no operation shows
FastAPI's default validation error; operation ids make readable client methods.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.main import create_app

PROBLEM_JSON = "application/problem+json"
METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}
CREATES = {
    ("post", "/api/v1/units"),
    ("post", "/api/v1/workspaces"),
    ("post", "/api/v1/employees"),
    ("post", "/api/v1/units/{code}/delegations"),
    ("post", "/api/v1/api-keys"),
    ("post", "/api/v1/permits"),
}

Operation = tuple[str, str, dict[str, Any]]


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """/openapi.json as served. It needs no database, so it is fetched once."""
    data_dir: Path = tmp_path_factory.mktemp("openapi")
    settings = Settings(_env_file=None, data_dir=data_dir, log_level="WARNING")  # type: ignore[call-arg]
    transport = httpx.ASGITransport(app=create_app(settings))

    async def fetch() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            return await http.get("/openapi.json")

    response = asyncio.run(fetch())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any], prefix: str = "") -> list[Operation]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        if path.startswith(prefix)
        for method, operation in item.items()
        if method in METHODS
    ]


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = document["components"]["schemas"][name]
    return schema


def test_the_api_is_documented(document: dict[str, Any]) -> None:
    assert document["info"]["title"] == "Izin Siaran"
    api = operations(document, "/api/v1/")
    assert len(api) > 20
    assert {(method, path) for method, path, _ in api} >= CREATES


@pytest.mark.parametrize("status", ["401", "422", "500"])
def test_every_api_operation_declares_the_common_problems(
    document: dict[str, Any], status: str
) -> None:
    missing = [
        f"{method.upper()} {path}"
        for method, path, operation in operations(document, "/api/v1/")
        if PROBLEM_JSON not in operation["responses"].get(status, {}).get("content", {})
    ]
    assert missing == [], f"without a {status} problem: {missing}"


def test_every_declared_error_is_a_problem(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if not status.startswith(("4", "5")):
                continue
            content = response.get("content", {})
            assert list(content) == [PROBLEM_JSON], (method, path, status, list(content))
            schema = content[PROBLEM_JSON].get("schema", {})
            assert schema.get("$ref") == "#/components/schemas/Problem", (method, path, status)


def test_validation_errors_use_the_problem_schema_not_fastapis(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    assert "HTTPValidationError" not in str(document)
    field_error = resolve(document, schemas["Problem"]["properties"]["errors"]["anyOf"][0]["items"])
    assert set(field_error["required"]) == {"loc", "msg", "code"}


def test_creates_declare_201_and_other_posts_are_actions(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document, "/api/v1/"):
        responses = operation["responses"]
        if (method, path) in CREATES:
            assert "201" in responses, path
            assert "200" not in responses, path
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert body["$ref"].endswith("Create"), path
        elif method == "post":
            # Anything else that POSTs acts on an existing resource: /…/{id}/<verb>.
            assert re.fullmatch(r"/api/v1/.+/\{[a-z_]+\}/[a-z]+", path), path
            assert "201" not in responses, path
        else:
            assert "201" not in responses, (method, path)


def test_operation_ids_are_unique_and_readable(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for operation_id in ids:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", operation_id), operation_id
        assert "api_v1" not in operation_id
        assert not re.search(r"_(get|post|put|patch|delete)$", operation_id), operation_id
    assert {
        "create_unit",
        "list_units",
        "read_unit",
        "update_unit",
        "submit_permit",
        "approve_permit",
        "read_permit",
        "verify_chain",
    } <= set(ids)


def test_every_operation_is_described(document: dict[str, Any]) -> None:
    undocumented = [
        f"{method.upper()} {path}"
        for method, path, operation in operations(document, "/api/v1/")
        if not operation.get("summary") or not operation.get("tags")
    ]
    assert undocumented == []


def test_every_operation_says_which_credential_it_takes(document: dict[str, Any]) -> None:
    """Two security schemes; the check takes either, every other API operation a bearer
    token (docs/RULES.md#credentials); the public endpoints none."""
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header"}
    assert schemes["apiKey"]["name"] == "X-API-Key"
    for _method, path, operation in operations(document, "/api/v1/"):
        expected = [{"bearer": []}]
        if path == "/api/v1/authorizations/check":
            expected = [{"bearer": []}, {"apiKey": []}]
        assert operation.get("security") == expected, path
    for path in ("/healthz", "/readyz", "/.well-known/jwks.json"):
        assert "security" not in document["paths"][path]["get"], path


def test_operators_endpoints_are_not_in_the_document(document: dict[str, Any]) -> None:
    """`/metrics` is for Prometheus, not for API clients (docs/RULES.md#metrics)."""
    assert "/metrics" not in document["paths"]
