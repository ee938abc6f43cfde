"""Status lists as the IETF OAuth Token Status List draft writes them
(docs/RULES.md#status-lists): one bit per signed permit, `1` once it is withdrawn, the
bits zlib-compressed and base64url-encoded in a token signed by the permits' key."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from jwt.utils import base64url_encode

from app.credentials.issuing import status_list_uri

TYPE = "statuslist+jwt"
MEDIA_TYPE = "application/statuslist+jwt"
TTL_SECONDS = 30
"""How long a verifier may keep a list before fetching it again (`ttl`, and the
response's `Cache-Control: max-age`)."""
LIFETIME = timedelta(hours=24)
"""A list token is not to be trusted after this (`exp`): an offline verifier must fetch a
new one at least daily, and a list recorded before a revocation cannot be replayed for
longer."""


def compressed_bits(size: int, set_indexes: Iterable[int]) -> str:
    """`lst`: `size` one-bit entries, entry `i` in bit `i % 8` of byte `i // 8`, the given
    ones set; zlib (RFC 1950) at the highest compression, then base64url without padding."""
    bits = bytearray(size // 8)
    for index in set_indexes:
        bits[index // 8] |= 1 << (index % 8)
    return base64url_encode(zlib.compress(bytes(bits), 9)).decode()


def payload(base_url: str, number: int, lst: str, now: datetime) -> dict[str, Any]:
    issued = int(now.timestamp())
    return {
        "sub": status_list_uri(base_url, number),
        "iat": issued,
        "exp": issued + int(LIFETIME.total_seconds()),
        "ttl": TTL_SECONDS,
        "status_list": {"bits": 1, "lst": lst},
    }
