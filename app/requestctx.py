"""Per-request context that logging and error rendering can reach."""

from __future__ import annotations

import itertools
import os
from contextvars import ContextVar

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None) -> object:
    return _request_id.set(value)


class _RequestIds:
    """32 hex digits, like a UUID's: 64 random bits drawn once per process, then a
    64-bit count. Unique across processes without a system call per request (a fresh
    UUID reads the kernel's random source every time)."""

    def __init__(self) -> None:
        self.restart()
        os.register_at_fork(after_in_child=self.restart)

    def restart(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._count):016x}"


_ids = _RequestIds()


def new_request_id() -> str:
    return _ids.next()
