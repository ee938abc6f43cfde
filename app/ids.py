"""Opaque, time-ordered identifiers (ULID layout: 48-bit ms time, 80 random bits)."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def new_id() -> str:
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


ID_LENGTH = 26


def could_be_id(value: str) -> bool:
    """Ids are 26 ASCII letters and digits; anything else names no record and is not sent
    to the database (PostgreSQL rejects some strings, e.g. with a NUL, outright)."""
    return len(value) == ID_LENGTH and value.isascii() and value.isalnum()
