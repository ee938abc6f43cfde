"""Logging set-up: every line carries the request id of the request it belongs to.

`LOG_FORMAT=text` (the default) writes readable lines; `json` one JSON object a line
(`time`, `level`, `logger`, `request_id`, `message`, and `exc_info` with a traceback),
written by python-json-logger with orjson, for log collectors.

The access log (`log_access`, a line for every request) is the one line written on the
hot path, thousands a second: where the service's handler is the only one a line would
reach, it writes the line to that handler's stream itself, the same bytes the handler's
formatter would (tested byte for byte, `tests/test_plumbing.py`), without a
`LogRecord`, its filters and its formatter, and the lines of one turn of the event loop
in one write (bench/README.md "With the access log on"). Anywhere else (another handler
on the root logger, one on `app.access`) the line goes through `logging`, as every
other line does.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from pythonjsonlogger.orjson import OrjsonFormatter

from app.requestctx import current_request_id

ACCESS_LOG = logging.getLogger("app.access")
_ACCESS_MESSAGE = "%s %s %d %.1fms"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        return True


class _TextFormatter(logging.Formatter):
    """The text format, its time written once a second (every line of one second shares
    its text; logging's own calls `time.strftime` for each line), to the character the
    text logging's `Formatter` writes."""

    FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

    def __init__(self) -> None:
        super().__init__(self.FORMAT)
        self._second: int | None = None
        self._second_text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return self.time_text(record.created, record.msecs)

    def time_text(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return f"{self._second_text},{int(msecs):03d}"  # as logging's "%s,%03d"


def _json_formatter() -> OrjsonFormatter:
    return OrjsonFormatter(
        "%(levelname)s %(name)s %(request_id)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",  # RFC 3339, UTC
    )


def _formatter(log_format: str) -> logging.Formatter:
    return _json_formatter() if log_format == "json" else _TextFormatter()


class ServiceHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The service's one handler: standard error, in `LOG_FORMAT`, with the request id."""

    def __init__(self, log_format: str) -> None:
        super().__init__(sys.stderr)
        self.log_format = log_format
        self._pending: list[str] = []
        self.addFilter(RequestIdFilter())
        self.setFormatter(_formatter(log_format))

    def access_line(
        self, created: float, request_id: str, message: str, fields: dict[str, Any]
    ) -> str:
        """An access-log line as this handler's formatter writes it for the record
        `ACCESS_LOG.info(message, extra=fields)` made at `created`."""
        if self.log_format == "json":
            data = {"level": "INFO", "logger": ACCESS_LOG.name, "request_id": request_id}
            data["message"] = message
            data.update(fields)
            data["time"] = datetime.fromtimestamp(created, tz=UTC).isoformat()
            return orjson.dumps(data).decode()  # the formatter's own call
        formatter: _TextFormatter = self.formatter  # type: ignore[assignment]
        when = formatter.time_text(created, int((created - int(created)) * 1000))  # msecs
        return f"{when} INFO {ACCESS_LOG.name} [{request_id}] {message}"

    def write_line(self, line: str) -> None:
        """Out with the lines of the event loop's turn: one write for all of them, at the
        turn's end (a write a line was a third of the access log's cost); at once where
        no loop runs. Any other record, a flush (`logging.shutdown` at exit makes one)
        and the handler's close write them first, so lines keep their order."""
        self._pending.append(line)
        if len(self._pending) == 1:  # the first of this turn's
            try:
                asyncio.get_running_loop().call_soon(self.write_pending)
            except RuntimeError:
                self.write_pending()

    def write_pending(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            lines, self._pending = self._pending, []
            if lines:
                self.stream.write(self.terminator.join(lines) + self.terminator)
                self.stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        self.write_pending()
        super().emit(record)

    def flush(self) -> None:
        self.write_pending()
        super().flush()

    def close(self) -> None:
        self.write_pending()
        super().close()


def _sole_handler() -> ServiceHandler | None:
    """The service's handler when it is the only place an access line would go."""
    handlers = logging.root.handlers
    if len(handlers) != 1 or ACCESS_LOG.handlers or not ACCESS_LOG.propagate:
        return None
    handler = handlers[0]
    if type(handler) is not ServiceHandler or len(handler.filters) != 1:
        return None
    if handler.level > logging.INFO or ACCESS_LOG.filters:
        return None
    return handler


def log_access(
    method: str, path: str, route: str, status: int, duration_ms: float, principal: str
) -> None:
    """A request's line in the access log (`app.access`, INFO; docs/RULES.md#logs):
    `GET /path 200 1.2ms`, and in `LOG_FORMAT=json` each of these as a field."""
    message = _ACCESS_MESSAGE % (method, path, status, duration_ms)
    fields = {
        "method": method,
        "path": path,
        "route": route,
        "status": status,
        "duration_ms": duration_ms,
        "principal": principal,
    }
    handler = _sole_handler()
    if handler is not None:
        try:
            line = handler.access_line(time.time(), current_request_id() or "-", message, fields)
            handler.write_line(line)
            return
        except Exception:  # noqa: S110 - logging's own path reports what failed
            pass
    ACCESS_LOG.info(_ACCESS_MESSAGE, method, path, status, duration_ms, extra=fields)


def configure_logging(level: str, log_format: str = "text") -> None:
    # No line names its thread, process or source line: not worked out for each record
    # (the logging HOWTO's "Optimization"; a fifth of what an access-log line cost).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    for existing in list(root.handlers):
        if isinstance(existing, ServiceHandler):
            root.removeHandler(existing)
    root.addHandler(ServiceHandler(log_format))
    root.setLevel(level)
    # Our middleware writes the access log, with the request id; uvicorn's would repeat it.
    logging.getLogger("uvicorn.access").disabled = True
