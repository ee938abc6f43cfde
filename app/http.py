"""HTTP conventions written once: a resource's version as `ETag`, `If-Match` read into the
version it names (docs/RULES.md#if-match), `Location` on create, and a body declared for
routes made from a table."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar, get_args

from fastapi import Depends, Header
from fastapi.responses import JSONResponse

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def etag(version: int) -> str:
    return f'"{version}"'


def if_match_version(
    if_match: Annotated[
        str | None,
        Header(alias="If-Match", max_length=64, description="The permit's ETag (version)."),
    ] = None,
) -> int | None:
    """The version an If-Match names; `*` or absent: no condition. Unparsable: matches
    nothing (so the change is refused as stale, never applied unconditionally)."""
    if if_match is None or if_match.strip() == "*":
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    return int(text) if text.isdigit() else -1


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
    OpenAPI document. A parameter declared `X | None` defaults to None; any other is required.

    For routes made from a table, where one function serves several bodies, queries and
    paths: the permit decisions, and the organisation's records.
    """
    signature = inspect.signature(endpoint)
    parameters = []
    for p in signature.parameters.values():
        if p.name in annotations:
            annotation = annotations[p.name]
            optional = type(None) in get_args(annotation)
            p = p.replace(
                annotation=annotation, default=None if optional else inspect.Parameter.empty
            )
        elif p.kind is inspect.Parameter.VAR_KEYWORD and path_key is not None:
            p = inspect.Parameter(path_key, inspect.Parameter.KEYWORD_ONLY, annotation=str)
        parameters.append(p)
    setattr(endpoint, "__signature__", signature.replace(parameters=parameters))  # noqa: B010
    return endpoint
