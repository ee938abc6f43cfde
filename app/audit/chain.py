"""The hash chain, as an auditor recomputes it: pure functions, no database.

`hash` = lowercase hex SHA-256 of the RFC 8785 canonical JSON of the event as
served, without its `hash` member; `prev_hash` is the previous event's hash, or
64 zeros for the first event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import rfc8785

GENESIS_HASH = "0" * 64


def event_hash(event: Mapping[str, Any]) -> str:
    body = {key: value for key, value in event.items() if key != "hash"}
    return hashlib.sha256(rfc8785.dumps(body)).hexdigest()
