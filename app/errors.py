"""One error hierarchy, rendered as RFC 9457 problems by one set of handlers.

Domain code raises `AppError` subclasses; nothing else builds error responses.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.requestctx import current_request_id

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://izin-siaran.anambaskab.go.id/problems/"


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    code: str


class Problem(BaseModel):
    """RFC 9457 problem details, with a machine-readable `code`."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] | None = None


class AppError(Exception):
    """A problem (docs/RULES.md#problems). Each kind is declared by its HTTP status, its
    default `code` and its title: `class NotFound(AppError, status=404, …)`."""

    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init_subclass__(
        cls, *, status: int | None = None, code: str | None = None, title: str | None = None
    ) -> None:
        super().__init_subclass__()
        if status is not None:
            cls.status = status
        if code is not None:
            cls.code = code
        if title is not None:
            cls.title = title

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})
        self.extra = extra


class Unauthenticated(
    AppError, status=401, code="unauthenticated", title="Authentication required"
):
    """A refused credential: a 401 that says how to authenticate (docs/RULES.md#credentials)."""

    def __init__(self, detail: str, *, code: str | None = None, scheme: str = "Bearer") -> None:
        challenge = f'{scheme} realm="izin-siaran"'
        if code and code != "unauthenticated" and scheme == "Bearer":
            challenge += ', error="invalid_token"'
        super().__init__(detail, code=code, headers={"WWW-Authenticate": challenge})


class Forbidden(AppError, status=403, code="forbidden", title="Forbidden"): ...


class NotFound(AppError, status=404, code="not_found", title="Not found"): ...


class AlreadyExists(AppError, status=409, code="already_exists", title="Already exists"): ...


class Conflict(AppError, status=409, code="conflict", title="Conflict"): ...


class InvalidInput(AppError, status=422, code="validation_error", title="Invalid input"):
    """Input that parses but breaks a rule; `errors` names the fields."""


class ServiceUnavailable(
    AppError, status=503, code="service_unavailable", title="Service unavailable"
): ...


def database_unavailable(
    detail: str = "The database is unreachable; try again shortly.",
) -> ServiceUnavailable:
    """What a request gets when the database cannot be reached or stays busy."""
    return ServiceUnavailable(
        detail,
        code="database_unavailable",
        headers={"Retry-After": "2"},
    )


def field_error(loc: Sequence[str | int], msg: str, code: str) -> dict[str, Any]:
    return {"loc": list(loc), "msg": msg, "code": code}


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
    instance: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    request_id = current_request_id()
    if request_id:
        body["request_id"] = request_id
    if errors is not None:
        body["errors"] = list(errors)
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}

_PYDANTIC_CODES = {
    "missing": "required",
    "extra_forbidden": "unknown_field",
    "timezone_aware": "naive_datetime",
    "string_too_long": "too_long",
    "string_too_short": "too_short",
    "string_pattern_mismatch": "pattern_mismatch",
    "literal_error": "not_allowed",
    "enum": "not_allowed",
}


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for error in exc.errors():
        kind = str(error.get("type", "invalid"))
        out.append(
            field_error(
                [p if isinstance(p, int) else str(p) for p in error.get("loc", ())],
                str(error.get("msg", "invalid value")),
                _PYDANTIC_CODES.get(kind, kind),
            )
        )
    return out


def app_error_response(exc: AppError, instance: str) -> JSONResponse:
    return problem_response(
        exc.status,
        exc.code,
        exc.detail,
        title=exc.title,
        errors=exc.errors,
        headers=exc.headers,
        instance=instance,
        extra=exc.extra,
    )


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return app_error_response(exc, request.url.path)


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc)
    if any(e["code"] == "json_invalid" for e in errors):
        return problem_response(
            400,
            "malformed_json",
            "The request body is not valid JSON.",
            errors=errors,
            instance=request.url.path,
        )
    return problem_response(
        422,
        "validation_error",
        "The request is not valid; see `errors`.",
        title="Invalid input",
        errors=errors,
        instance=request.url.path,
    )


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"No resource at {request.url.path}."
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}."
        allowed = _allowed_methods(request)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
    return problem_response(
        exc.status_code,
        code,
        detail,
        headers=headers,
        instance=request.url.path,
    )


def _allowed_methods(request: Request) -> list[str]:
    """Every method the app serves on this path (FastAPI's 405 names only one route's)."""
    app = request.app
    templates: list[tuple[re.Pattern[str], list[str]]] | None = getattr(
        app.state, "path_methods", None
    )
    if templates is None:
        templates = []
        for template, operations in app.openapi()["paths"].items():
            pattern = re.compile(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$")
            methods = sorted(m.upper() for m in operations)
            templates.append((pattern, [*methods, "HEAD"] if "GET" in methods else methods))
        app.state.path_methods = templates
    for pattern, methods in templates:
        if pattern.match(request.url.path):
            return methods
    return []


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("integrity error on %s %s: %s", request.method, request.url.path, exc)
    conflict = Conflict(
        "The change conflicts with data written at the same time; retry the request."
    )
    return app_error_response(conflict, request.url.path)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.error("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return app_error_response(database_unavailable(), request.url.path)


def _is_connection_problem(exc: DBAPIError) -> bool:
    return bool(exc.connection_invalidated) or isinstance(exc, OperationalError)


async def _dbapi_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if _is_connection_problem(exc):
        return await _database_unavailable(request, exc)
    raise exc


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(DBAPIError, _dbapi_error)
    app.add_exception_handler(PoolTimeoutError, _database_unavailable)
    app.add_exception_handler(ConnectionError, _database_unavailable)
    # The driver's own timeouts (app/db.py): a database that does not answer in time.
    app.add_exception_handler(TimeoutError, _database_unavailable)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries declaring the problems an operation can return."""
    return {
        status: {
            "model": Problem,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {}},
        }
        for status in statuses
    }


def file_problems_under_problem_json(document: dict[str, Any]) -> dict[str, Any]:
    """Move each 4xx/5xx schema from `application/json` to `application/problem+json`.

    FastAPI files a response `model` under the route's own media type (`application/json`,
    or `text/event-stream` for the event stream), which would leave the problem media type
    without a schema and declare an error body the service never sends.
    """
    for item in document.get("paths", {}).values():
        for operation in item.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if str(status)[:1] in {"4", "5"} and PROBLEM_JSON in content:
                    for media in [m for m in content if m != PROBLEM_JSON]:
                        schema = content.pop(media).get("schema")
                        if schema is not None:
                            content[PROBLEM_JSON]["schema"] = schema
    return document


def public_operation(*statuses: int) -> dict[str, Any]:
    """A public operation as the document declares it: no credential (`security: []`), and
    the problems any request can meet (URI too long, the address' rate limit, a failure),
    with `statuses`."""
    return {
        "responses": problem_responses(414, 429, 500, *statuses),
        "openapi_extra": {"security": []},
    }


API_PROBLEMS = problem_responses(401, 403, 414, 422, 429, 500, 503)
"""What any /api/v1 operation can answer: auth, URI length, validation, rate limit, failures."""


def created_links(
    parameter: str, field: str, *operation_ids: str
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI links from a 201 to the operations that take what it created (stateful testing)."""
    return {
        201: {
            "description": "Created",
            "links": {
                operation_id: {
                    "operationId": operation_id,
                    "parameters": {parameter: f"$response.body#/{field}"},
                }
                for operation_id in operation_ids
            },
        }
    }
