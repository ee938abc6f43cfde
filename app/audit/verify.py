"""Walking the chain: recompute every hash, check every link and every `seq`.

Works in batches (keyset on `seq`), so memory stays flat on millions of events.
The same walk serves `GET /api/v1/audit/verify` and `izin-siaran audit verify`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.audit.chain import GENESIS_HASH, event_hash


@dataclass
class ChainReport:
    valid: bool = True
    count: int = 0
    head: str = GENESIS_HASH
    seq: int | None = None
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        if self.valid:
            return {"valid": True, "count": self.count, "head": self.head}
        return {"valid": False, "count": self.count, "seq": self.seq, "reason": self.reason}


class ChainVerifier:
    """Feed served events in `seq` order; the report says where the chain first breaks."""

    def __init__(self) -> None:
        self.report = ChainReport()

    def feed(self, events: Iterable[Mapping[str, Any]]) -> bool:
        """False once a bad event was found (later events are then ignored)."""
        report = self.report
        for event in events:
            if not report.valid:
                return False
            expected_seq = report.count + 1
            problem = None
            if event["seq"] != expected_seq:
                problem = f"expected seq {expected_seq}, found {event['seq']} (an event is missing)"
            elif event["prev_hash"] != report.head:
                problem = "prev_hash does not match the previous event's hash"
            elif event_hash(event) != event["hash"]:
                problem = "hash does not match the event's content (it was altered)"
            if problem is not None:
                report.valid, report.seq, report.reason = False, expected_seq, problem
                return False
            report.count, report.head = expected_seq, str(event["hash"])
        return report.valid


async def verify_stream(batches: AsyncIterator[list[dict[str, Any]]]) -> ChainReport:
    verifier = ChainVerifier()
    async for batch in batches:
        if not verifier.feed(batch):
            break
    return verifier.report
