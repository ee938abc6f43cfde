"""The permit read's fast path: `GET /api/v1/permits/{id}` answered below FastAPI.

Apps poll a permit while they wait for a decision. This ASGI layer answers the
common case itself — one bearer token of an active employee, a permit id and no
query, a permit the caller may see — with one database round trip
(`app.permits.reader`) and the same rules as the route (`app.permits.lifecycle.effective_status`,
`app.permits.visibility.may_read`, `app.permits.approvers`). Anything else goes
on to the FastAPI route, which owns every error: so an unknown or hidden permit,
a bad, unknown or inactive credential, an API key, a CORS request still get the
route's own answer. A database it cannot reach gets the same 503 problem the
route would give.
"""

from __future__ import annotations

from starlette.types import Scope, Send

from app.auth.credentials import caller_name, judge_employee
from app.errors import AppError, Unauthenticated
from app.fastpath import (
    FastPath,
    bearer_nip,
    credential_headers,
    send_json,
    send_problem,
)
from app.permits.approvers import approvers_of
from app.permits.lifecycle import effective_status
from app.permits.presentation import shown
from app.permits.reader import INSTANTS, PermitReader
from app.permits.visibility import may_read
from app.timeutil import format_instant, utcnow

PREFIX = "/api/v1/permits/"
ID_LENGTH = 26


def permit_id_of(path: str) -> str | None:
    """The id in `/api/v1/permits/{id}`, if it could name a permit (ids are 26 ASCII
    letters and digits); None for any other path."""
    if not path.startswith(PREFIX):
        return None
    permit_id = path[len(PREFIX) :]
    if len(permit_id) != ID_LENGTH or not (permit_id.isascii() and permit_id.isalnum()):
        return None
    return permit_id


class PermitFastPath(FastPath):
    """ASGI layer: answers plain permit reads itself, passes everything else on."""

    route = "/api/v1/permits/{permit_id}"

    def takes(self, scope: Scope) -> bool:
        return not scope["query_string"] and str(scope["path"]).startswith(PREFIX)

    async def answer(self, scope: Scope, send: Send) -> bool:
        permit_id = permit_id_of(scope["path"])
        reader: PermitReader | None = self.state.get("permit_reader")
        if permit_id is None or reader is None:
            return False
        headers = credential_headers(scope)
        if headers is None or headers[0] is None or headers[1] is not None:
            return False
        nip = await bearer_nip(headers[0], self.state)
        if nip is None:
            return False
        now = utcnow()
        try:
            reading = await reader.read(permit_id, caller=nip, at=now)
        except AppError as exc:  # the database is unavailable: the route would say the same
            await send_problem(scope, send, exc, scope["path"])
            return True
        caller, permit = reading.caller, reading.permit
        try:  # the route's own rule for the caller (docs/RULES.md#credentials)
            judge_employee(None if caller is None else caller.active)
        except Unauthenticated:
            return False
        if caller is None or permit is None:
            return False
        deciders = approvers_of(reading.units, permit, now, reader.escalate_before)
        if not may_read(permit, caller, deciders) or not self.admitted(scope, caller_name(nip=nip)):
            return False
        body = shown(permit.fields, effective_status(permit, now), deciders)
        for name in INSTANTS:
            if body[name] is not None:
                body[name] = format_instant(body[name])
        etag = f'"{permit.fields["version"]}"'.encode()
        await send_json(scope, send, body, [(b"etag", etag)])
        self.count.answered += 1
        return True
