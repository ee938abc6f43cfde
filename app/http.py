"""HTTP conventions written once: a resource's version as `ETag`, `If-Match` read into the
version it names (docs/RULES.md#if-match), `Location` on create."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header
from fastapi.responses import JSONResponse


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
