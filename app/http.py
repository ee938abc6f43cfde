"""HTTP conventions written once: a resource's version as `ETag`, `If-Match` read into the
version it names (docs/RULES.md#if-match), `Location` on create, and a body declared for
routes made from a table."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar, get_args

from fastapi import Depends, Header
from fastapi.responses import JSONResponse

from app.errors import InvalidInput, field_error
from app.schemas import Absent

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def etag(version: int) -> str:
    return f'"{version}"'


IF_MATCH = r'^(\*|(W/)?"([0-9]{1,18})"|([0-9]{1,18}))$'
"""What `if_match_version` reads (the document's pattern): `*`, or a version as an entity
tag (`"3"`, weak `W/"3"`), or bare (`3`)."""
_IF_MATCH = re.compile(IF_MATCH)


async def if_match_version(
    if_match: Annotated[
        str | Absent,
        Header(
            alias="If-Match",
            max_length=64,
            description="The permit's ETag (version), or `*`.",
            json_schema_extra={"pattern": IF_MATCH},
        ),
    ] = None,
) -> int | None:
    """The version an If-Match names; `*` or absent: no condition. Anything else is a 422
    `invalid_if_match`: the change is never applied unconditionally."""
    if if_match is None or if_match == "*":  # HTTP has trimmed the value's whitespace
        return None
    matched = _IF_MATCH.fullmatch(if_match)
    if matched is None:
        raise InvalidInput(
            'If-Match must be `*` or an ETag this service sent, such as "3".',
            code="invalid_if_match",
            errors=[field_error(["header", "If-Match"], "not a version", "invalid_if_match")],
        )
    return int(matched.group(3) or matched.group(4))


IfMatchVersion = Annotated[int | None, Depends(if_match_version)]
"""Declares `If-Match` on a route; the route hands the version to the service to judge."""


def resource_response(path: str, body: dict[str, Any], status_code: int = 200) -> JSONResponse:
    """`body` as JSON, with its `version` as `ETag` and, on 201, its `Location` below `path`."""
    headers = {}
    if "version" in body:
        headers["ETag"] = etag(int(body["version"]))
    if status_code == 201 and "id" in body:
        headers["Location"] = f"{path.rstrip('/')}/{body['id']}"
    return JSONResponse(body, status_code=status_code, headers=headers)


def declare(endpoint: Endpoint, *, path_key: str | None = None, **annotations: Any) -> Endpoint:
    """`endpoint` with the parameters named in `annotations` declared as those types, and its
    `**key` parameter as the path parameter `path_key`, for FastAPI's validation and the
    OpenAPI document. A parameter declared `X | None` (or `X | Absent`: optional, but not
    nullable) defaults to None; any other is required.

    For routes made from a table, where one function serves several bodies, queries and
    paths: the permit decisions, and the organisation's records.
    """
    signature = inspect.signature(endpoint)
    parameters = []
    for p in signature.parameters.values():
        if p.name in annotations:
            annotation = annotations[p.name]
            optional = any(arg is type(None) or arg == Absent for arg in get_args(annotation))
            p = p.replace(
                annotation=annotation, default=None if optional else inspect.Parameter.empty
            )
        elif p.kind is inspect.Parameter.VAR_KEYWORD and path_key is not None:
            p = inspect.Parameter(path_key, inspect.Parameter.KEYWORD_ONLY, annotation=str)
        parameters.append(p)
    setattr(endpoint, "__signature__", signature.replace(parameters=parameters))  # noqa: B010
    return endpoint


# --- the headers above, in the OpenAPI document ------------------------------------------

_HEADERS: dict[str, dict[str, Any]] = {
    "Location": {
        "description": "Where the created resource is read (docs/RULES.md#created).",
        "schema": {"type": "string", "format": "uri-reference"},
    },
    "ETag": {
        "description": "The permit's version, for `If-Match` (docs/RULES.md#if-match).",
        "schema": {"type": "string", "pattern": r'^"[0-9]+"$'},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying: until the rate limit admits a request "
        "(429), the database or identity provider may answer again (503), or the first of two "
        "requests with one `Idempotency-Key` has finished (409 `idempotency_in_flight`).",
        "schema": {"type": "integer", "minimum": 0},
    },
    "Cache-Control": {
        "description": "`no-store`: an answer of the check is never reused.",
        "schema": {"type": "string", "enum": ["no-store"]},
    },
}
_VERSIONED = "#/components/schemas/PermitOut"
_PERMITS = "/api/v1/permits"  # a 409 `idempotency_in_flight` there says when to retry


def declare_headers(document: dict[str, Any]) -> dict[str, Any]:
    """Declare the response headers the conventions put on responses: `Location` on every
    201, `ETag` on every permit answered, `Retry-After` on every 429 and 503 (and on a
    permit write's 409, sent with `idempotency_in_flight`), and the check's
    `Cache-Control`."""
    for path, item in document.get("paths", {}).items():
        for operation in item.values():
            for status, response in operation.get("responses", {}).items():
                names = []
                if status == "201":
                    names.append("Location")
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if status in {"200", "201"} and schema == {"$ref": _VERSIONED}:
                    names.append("ETag")
                if status in {"429", "503"} or (status == "409" and path.startswith(_PERMITS)):
                    names.append("Retry-After")
                if status == "200" and path.endswith("/authorizations/check"):
                    names.append("Cache-Control")
                if names:
                    response.setdefault("headers", {}).update({n: _HEADERS[n] for n in names})
    return document
