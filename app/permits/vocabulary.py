"""The permit's closed lists and how a channel is matched: each written once.

Rules: docs/RULES.md#platforms, docs/RULES.md#channels, docs/RULES.md#states.
"""

from __future__ import annotations

import unicodedata
from typing import Literal, get_args

Platform = Literal["youtube", "tiktok", "instagram", "facebook", "x", "other"]
Purpose = Literal["official", "public_service", "public_information", "education", "personal"]
Status = Literal["pending", "approved", "denied", "cancelled", "expired", "revoked"]
Capacity = Literal["head", "plh", "plt", "parent_head"]
# What happens to a permit, as its audit events' `action`, its webhooks' event types and
# its event-stream events name it (docs/RULES.md#push).
PermitEvent = Literal[
    "permit.submitted",
    "permit.approved",
    "permit.denied",
    "permit.cancelled",
    "permit.revoked",
    "permit.expired",
    "permit.reminder",
    "permit.escalated",
]

PLATFORMS: tuple[str, ...] = get_args(Platform)
PURPOSES: tuple[str, ...] = get_args(Purpose)
STATUSES: tuple[str, ...] = get_args(Status)
CAPACITIES: tuple[str, ...] = get_args(Capacity)
PERMIT_EVENTS: tuple[str, ...] = get_args(PermitEvent)

# How people read them (the /verify page, in Bahasa Indonesia): one name for every value.
PLATFORM_NAMES: dict[str, str] = {
    "youtube": "YouTube",
    "tiktok": "TikTok",
    "instagram": "Instagram",
    "facebook": "Facebook",
    "x": "X",
    "other": "platform lain",
}
CAPACITY_NAMES: dict[str, str] = {
    "head": "kepala unit",
    "plh": "pelaksana harian (Plh) kepala unit",
    "plt": "pelaksana tugas (Plt) kepala unit",
    "parent_head": "kepala unit induk",
}
if set(PLATFORM_NAMES) != set(PLATFORMS) or set(CAPACITY_NAMES) != set(CAPACITIES):
    raise RuntimeError("every platform and capacity needs its name")  # pragma: no cover


def channel_key(channel: str) -> str:
    """How channels are matched (docs/RULES.md#channels): Unicode NFKC (so full-width and
    other compatibility look-alikes are the letters they stand for), trimmed, case-folded,
    a leading @ ignored. The permit keeps the text as submitted; this is stored beside it."""
    return unicodedata.normalize("NFKC", channel).strip().casefold().removeprefix("@")
