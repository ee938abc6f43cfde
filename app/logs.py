"""Logging set-up: every line carries the request id of the request it belongs to."""

from __future__ import annotations

import logging
import sys

from app.requestctx import current_request_id


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        return True


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    )
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_izin_siaran", False):
            root.removeHandler(existing)
    handler._izin_siaran = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # Our middleware writes the access log, with the request id; uvicorn's would repeat it.
    logging.getLogger("uvicorn.access").disabled = True
