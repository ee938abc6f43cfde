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
import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from app.apikeys.schemas import ApiKeyCreate
from app.authorizations.router import CheckBatch
from app.config import Settings
from app.credentials.schemas import VerifyRequest
from app.demo import EMPLOYEES
from app.errors import AppError
from app.http import IF_MATCH, if_match_version
from app.main import create_app
from app.nip import infer_employment
from app.org.schemas import (
    DelegationCreate,
    EmployeeCreate,
    EmployeeUpdate,
    UnitCreate,
    UnitUpdate,
    WorkspaceCreate,
    WorkspaceUpdate,
)
from app.permits.idempotency import KEY_PATTERN, check_key
from app.permits.schemas import ApproveBody, CancelBody, DenyBody, PermitCreate, RevokeBody
from app.push.schemas import WebhookCreate, WebhookUpdate
from app.schemas import NIP_PATTERN, Trimmed

PROBLEM_JSON = "application/problem+json"
METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}
CREATES = {
    ("post", "/api/v1/units"),
    ("post", "/api/v1/workspaces"),
    ("post", "/api/v1/employees"),
    ("post", "/api/v1/units/{code}/delegations"),
    ("post", "/api/v1/api-keys"),
    ("post", "/api/v1/permits"),
    ("post", "/api/v1/webhooks"),
}
ISSUES = {
    ("post", "/api/v1/events/tickets"),
    ("post", "/api/v1/credentials/verify"),
    ("post", "/api/v1/authorizations/check-batch"),
}
"""POSTs that hand out something not kept as a resource (a single-use ticket, a verdict,
answers): 200."""
PUBLIC_API = {"/api/v1/status-lists/{number}", "/api/v1/credentials/verify"}
"""The API's public operations (SPEC §9): no credential, so never a 401."""
EITHER_CREDENTIAL = {
    "/api/v1/authorizations/check",
    "/api/v1/authorizations/check-batch",
    "/api/v1/events/stream",
    "/api/v1/events/tickets",
}

Operation = tuple[str, str, dict[str, Any]]
MODELS: dict[str, type[BaseModel]] = {
    model.__name__: model
    for model in (
        UnitCreate,
        UnitUpdate,
        WorkspaceCreate,
        WorkspaceUpdate,
        EmployeeCreate,
        EmployeeUpdate,
        DelegationCreate,
        ApiKeyCreate,
        PermitCreate,
        ApproveBody,
        DenyBody,
        CancelBody,
        RevokeBody,
        WebhookCreate,
        WebhookUpdate,
        VerifyRequest,
        CheckBatch,
    )
}
VALID_NIPS = [nip for nip, *_ in EMPLOYEES]


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
        and not (status == "401" and path in PUBLIC_API)
    ]
    assert missing == [], f"without a {status} problem: {missing}"


def test_every_operation_with_a_json_body_declares_400_and_413(document: dict[str, Any]) -> None:
    """A body that is not JSON is a 400 `malformed_json`, one too large a 413: both must be
    in the document for any operation that takes a body (public ones included)."""
    missing = [
        f"{method.upper()} {path} {status}"
        for method, path, operation in operations(document)
        if "application/json" in operation.get("requestBody", {}).get("content", {})
        for status in ("400", "413")
        if status not in operation["responses"]
    ]
    assert missing == []


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
        elif (method, path) in ISSUES:
            assert "200" in responses, path
        elif method == "post":
            # Anything else that POSTs acts on an existing resource: /…/{id}/<verb>.
            assert re.fullmatch(r"/api/v1/.+/\{[a-z_]+\}/[a-z-]+", path), path
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
        expected: list[dict[str, list[str]]] = [{"bearer": []}]
        if path in PUBLIC_API:
            expected = []
        elif path in EITHER_CREDENTIAL:
            expected = [{"bearer": []}, {"apiKey": []}]
        assert operation.get("security") == expected, path
    for path in ("/healthz", "/readyz", "/.well-known/jwks.json"):
        assert document["paths"][path]["get"]["security"] == [], path  # stated: none


def test_operators_endpoints_are_not_in_the_document(document: dict[str, Any]) -> None:
    """`/metrics` is for Prometheus, not for API clients (docs/RULES.md#metrics)."""
    assert "/metrics" not in document["paths"]


# --- the document's constraints are the service's own (docs/RULES.md#text) ---------------


def _request_bodies(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation["requestBody"]["content"]["application/json"]["schema"])
        for method, path, operation in operations(document)
        if "requestBody" in operation
    ]


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    """`schema` as a JSON Schema validator (the Rust one schemathesis uses) reads it."""
    return jsonschema_rs.validator_for({**schema, "components": document["components"]})


def test_every_request_body_has_an_example_the_service_accepts(
    document: dict[str, Any],
) -> None:
    """Each example is valid by the document and by the body's own model."""
    bodies = _request_bodies(document)
    assert len(bodies) >= 13
    for method, path, schema in bodies:
        declared = resolve(document, schema)
        examples = declared.get("examples")
        assert examples, (method, path)
        model = MODELS[declared["title"]]
        for example in examples:
            _validator(document, schema).validate(example)
            model.model_validate(example)


def test_every_timestamp_is_a_date_time(document: dict[str, Any]) -> None:
    found = []

    def walk(where: str, schema: Any) -> None:
        if isinstance(schema, dict):
            if schema.get("type") == "string" and re.search(r"(_at|\.at)$", where):
                found.append((where, schema.get("format")))
            for key, value in schema.items():
                walk(where if key in {"properties", "anyOf", "items"} else f"{where}.{key}", value)
        elif isinstance(schema, list):
            for value in schema:
                walk(where, value)

    for name, schema in document["components"]["schemas"].items():
        walk(name, schema)
    assert len(found) >= 28
    assert [where for where, format_ in found if format_ != "date-time"] == []


def test_a_patch_field_is_nullable_exactly_when_null_clears_it(document: dict[str, Any]) -> None:
    """`null` is declared where it clears a field, and nowhere else (the service's 422
    `not_nullable` list is read from the same types: `PatchModel.not_nullable`)."""
    for model in (UnitUpdate, WorkspaceUpdate, EmployeeUpdate):
        properties = document["components"]["schemas"][model.__name__]["properties"]
        nullable = {
            name
            for name, schema in properties.items()
            if {"type": "null"} in schema.get("anyOf", [])
        }
        assert nullable == set(properties) - set(model.not_nullable()), model
        assert all("default" not in schema for schema in properties.values())
    assert set(UnitUpdate.not_nullable()) == {"name", "active"}
    assert set(EmployeeUpdate.not_nullable()) == {"name", "employment", "roles", "active"}


def _agrees(pattern: str, service_accepts: Any, value: str) -> None:
    declared = jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
    assert declared.is_valid(value) == service_accepts(value), repr(value)


def _accepts(check: Any) -> Any:
    def accepts(value: str) -> bool:
        try:
            result = check(value)
            if asyncio.iscoroutine(result):  # a dependency (`async def`, awaiting nothing)
                asyncio.run(result)
        except (ValueError, AppError):  # a pydantic check's error, or the service's 422
            return False
        return True

    return accepts


# Characters where whitespace and NUL rules could disagree: every whitespace of either
# reading (Python's `str.isspace`, ECMA-262's `\s`), NUL, and plain letters.
_EDGES = st.sampled_from(
    [
        *(" ", "\t", "\n", "\r", "\v", "\f", "\x1c", "\x1f", "\x85", "\xa0", "\u1680", "\u2000"),
        *("\u2028", "\u202f", "\u3000", "\ufeff", "\x00", "a", "Z", "é", "1"),
    ]
)
_TEXT = st.text(_EDGES, max_size=6) | st.text(max_size=6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_TEXT)
def test_free_text_patterns_say_what_the_service_checks(value: str) -> None:
    """Every free-text field (names, reasons, titles, channels): the declared pattern and
    the service agree on every string, blank and padded ones included."""
    for trimmed in (Trimmed(200), Trimmed(200, empty=True)):
        _agrees(trimmed.pattern, _accepts(trimmed.check), value)


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from(" !~\t\x7fa0é\x00\n"), min_size=0, max_size=5))
def test_the_idempotency_key_pattern_says_what_the_service_checks(value: str) -> None:
    _agrees(KEY_PATTERN, _accepts(check_key), value)


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from('0123456789²"W/* x٣'), max_size=6))
def test_the_if_match_pattern_says_what_names_a_version(value: str) -> None:
    _agrees(IF_MATCH, _accepts(if_match_version), value)


@settings(max_examples=500, deadline=None)
@given(st.from_regex(r"\A[0-9]{18}\Z") | st.sampled_from(VALID_NIPS))
def test_every_nip_the_service_accepts_matches_the_declared_pattern(value: str) -> None:
    """The pattern says as much of the NIP rule as a pattern can: whatever the service
    accepts matches it (what it refuses beyond it is listed in docs/RULES.md#openapi)."""
    declared = jsonschema_rs.validator_for({"type": "string", "pattern": NIP_PATTERN})
    accepted = _accepts(infer_employment)(value)
    if accepted:
        assert declared.is_valid(value), value


def test_the_nip_pattern_refuses_each_part_it_can_judge() -> None:
    declared = jsonschema_rs.validator_for({"type": "string", "pattern": NIP_PATTERN})
    assert all(declared.is_valid(nip) for nip in VALID_NIPS)
    for wrong in (
        "189904042014021003",  # born before 1900
        "198913042014021003",  # month 13
        "198904322014021003",  # day 32
        "198904041814021003",  # appointed in 1814
        "198904042014001003",  # appointment month or contract 00
        "198904042014023003",  # sex 3
        "198904042014021000",  # sequence 000
        "19890404201402100",  # 17 digits
    ):
        assert not declared.is_valid(wrong), wrong
