"""HTTP endpoints of signed permits (SPEC §9, docs/RULES.md#signed-permits): issuing a
credential and its QR code, the status lists, verification (API and page), and the JWKS."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from app.auth.dependencies import CurrentEmployee
from app.credentials import issuing, page, service, statuslists
from app.credentials.keys import KeyRing
from app.credentials.schemas import CredentialOut, KeySet, VerifyOut, VerifyRequest
from app.db import ReadSession
from app.errors import API_PROBLEMS, NotFound, problem_responses, public_operation
from app.timeutil import utcnow

router = APIRouter(tags=["signed permits"])

PUBLIC = {"Access-Control-Allow-Origin": "*"}
"""Public documents any web page may read (no credential is ever sent with them)."""
_ISSUE: dict[int | str, dict[str, Any]] = {**API_PROBLEMS, **problem_responses(404, 409)}
_IMAGE = {"schema": {"type": "string", "format": "binary"}}


def _keys(request: Request) -> KeyRing:
    keys: KeyRing = request.app.state.keyring
    return keys


def _base_url(request: Request) -> str:
    return str(request.app.state.settings.public_base_url)


@router.get("/api/v1/permits/{permit_id}/credential", responses=_ISSUE)
async def permit_credential(
    permit_id: str, request: Request, session: ReadSession, employee: CurrentEmployee
) -> CredentialOut:
    """The approved permit signed, for anyone to verify offline: its readers only."""
    issued = await service.issue(session, employee, permit_id, _keys(request), _base_url(request))
    return CredentialOut(credential=issued.credential, verify_url=issued.verify_url)


def _qr_endpoint(kind: Literal["png", "svg"]) -> Any:
    media_type = "image/png" if kind == "png" else "image/svg+xml"

    async def endpoint(
        permit_id: str, request: Request, session: ReadSession, employee: CurrentEmployee
    ) -> Response:
        keys, base = _keys(request), _base_url(request)
        issued = await service.issue(session, employee, permit_id, keys, base)
        # Drawing the code takes tens of milliseconds of CPU (the QR standard's choice of
        # mask): the database connection goes back to the pool first, and the drawing runs
        # off the event loop, which keeps answering other requests (the check) meanwhile.
        await session.close()
        image = await asyncio.to_thread(issuing.qr_code, issued.verify_url, kind)
        return Response(image, media_type=media_type)

    return endpoint


for _kind in ("png", "svg"):
    router.add_api_route(
        f"/api/v1/permits/{{permit_id}}/credential.{_kind}",
        _qr_endpoint(_kind),
        methods=["GET"],
        name=f"permit_credential_{_kind}",
        description=f"The credential's verify URL as a QR code ({_kind.upper()}).",
        response_class=Response,
        responses={
            **_ISSUE,
            200: {"content": {f"image/{'png' if _kind == 'png' else 'svg+xml'}": _IMAGE}},
        },
    )


_LIST = public_operation(404, 422, 503)
_LIST["responses"][200] = {"content": {statuslists.MEDIA_TYPE: {"schema": {"type": "string"}}}}


@router.get("/api/v1/status-lists/{number}", response_class=Response, **_LIST)
async def status_list(
    number: Annotated[int, Path(ge=0, le=2**31 - 1)], request: Request, session: ReadSession
) -> Response:
    """A status list (IETF OAuth Token Status List): one bit per signed permit, `1` once
    it is revoked or cancelled. Public; keep it at most `ttl` seconds."""
    token = await service.status_list_token(session, number, _keys(request), _base_url(request))
    if token is None:
        raise NotFound(f"There is no status list {number}.")
    return Response(
        token,
        media_type=statuslists.MEDIA_TYPE,
        headers={"Cache-Control": f"public, max-age={statuslists.TTL_SECONDS}", **PUBLIC},
    )


@router.post("/api/v1/credentials/verify", **public_operation(400, 413, 422, 503))
async def verify_credential(
    body: VerifyRequest, request: Request, session: ReadSession
) -> VerifyOut:
    """Is this signed permit valid now? Any text gets a verdict: `valid`, or the first
    reason it is not (`malformed`, `bad_signature`, `revoked`, `not_yet_valid`,
    `expired`). Public."""
    verdict = await service.judge(session, body.credential, _keys(request))
    return VerifyOut(valid=verdict.valid, reason=verdict.reason, permit=verdict.claims)


@router.get("/verify", include_in_schema=False)
async def verify_page(
    request: Request,
    session: ReadSession,
    credential: Annotated[str | None, Query(max_length=16_384)] = None,
) -> HTMLResponse:
    """The verify page a permit's QR code opens (docs/RULES.md#verify-page)."""
    verdict = None
    if credential:
        verdict = await service.judge(session, credential, _keys(request))
    return HTMLResponse(
        page.render(verdict, utcnow()),
        headers={"Content-Security-Policy": page.POLICY, "Cache-Control": "no-store"},
    )


@router.get("/.well-known/jwks.json", response_model=KeySet, **public_operation(503))
async def jwks(request: Request, session: ReadSession) -> JSONResponse:
    """The service's public keys: the signed permits' (the one that signs and the retired
    ones whose permits have not ended) and, in local mode, the key of its own tokens."""
    signer = request.app.state.local_signer
    own = signer.jwks["keys"] if signer is not None else []
    keys = [*own, *await _keys(request).published(session)]
    return JSONResponse({"keys": keys}, headers={"Cache-Control": "public, max-age=300", **PUBLIC})
