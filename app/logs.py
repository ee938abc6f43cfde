"""Logging set-up: every line carries the request id of the request it belongs to.

`LOG_FORMAT=text` (the default) writes readable lines; `json` one JSON object a line
(`time`, `level`, `logger`, `request_id`, `message`, and `exc_info` with a traceback),
written by python-json-logger with orjson, for log collectors.

The access log (`log_access`, a line for every request) is the one line written on the
hot path, thousands a second: where the service's handler is the only one a line would
reach, it writes the line to that handler's stream itself, the same bytes the handler's
formatter would (tested byte for byte, `tests/test_plumbing.py`), without a
`LogRecord`, its filters and its formatter, and many lines in one write, at most
`WRITE_AFTER` seconds after the first of them (bench/README.md "With the access log on"
and "ninth round"). Anywhere else (another handler
a line would reach, a record factory of another: `_sole_handler`) the line goes through
`logging`, as every other line does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from pythonjsonlogger.orjson import OrjsonFormatter

from app.requestctx import current_request_id

ACCESS_LOG = logging.getLogger("app.access")
_ACCESS_MESSAGE = "%s %s %d %.1fms"
WRITE_AFTER = 0.01
"""Seconds an access line waits, at most, for others to go out with it (`add_line`)."""


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
        return f"{self._second_of(created)},{int(msecs):03d}"  # as logging's "%s,%03d"

    def _second_of(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return self._second_text

    _ACCESS_FORMAT = FORMAT % {  # the format's one home, its access-log fields filled in
        "asctime": "%s,%03d",  # logging's `default_msec_format`
        "levelname": "INFO",
        "name": ACCESS_LOG.name,
        "request_id": "%s",
        "message": _ACCESS_MESSAGE,
    }

    def access_text(
        self, created: float, request_id: str, method: str, path: str, status: int, ms: float
    ) -> str:
        """The line this formatter writes for `ACCESS_LOG.info(_ACCESS_MESSAGE, method,
        path, status, ms)` made at `created`: one `%`, where `format` takes several."""
        second = self._second_of(created)
        msecs = int((created - int(created)) * 1000)  # as `LogRecord` works it out
        return self._ACCESS_FORMAT % (second, msecs, request_id, method, path, status, ms)


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
        self._pending_size = 0
        self._scheduled_on: asyncio.AbstractEventLoop | None = None
        self.addFilter(RequestIdFilter())
        self.setFormatter(_formatter(log_format))

    def access_line(
        self,
        created: float,
        request_id: str,
        method: str,
        path: str,
        route: str,
        status: int,
        duration_ms: float,
        principal: str,
    ) -> str:
        """The line this handler's formatter writes for the access-log record
        `log_access` would make through `logging` at `created`."""
        if self.log_format == "json":
            data = {"level": "INFO", "logger": ACCESS_LOG.name, "request_id": request_id}
            data["message"] = _ACCESS_MESSAGE % (method, path, status, duration_ms)
            data |= _access_fields(method, path, route, status, duration_ms, principal)
            data["time"] = datetime.fromtimestamp(created, tz=UTC).isoformat()
            return orjson.dumps(data).decode()  # the formatter's own call
        formatter: _TextFormatter = self.formatter  # type: ignore[assignment]
        return formatter.access_text(created, request_id, method, path, status, duration_ms)

    def add_line(self, line: str) -> None:
        """Out with the lines of the moment, with `self.lock` held by the caller: one write
        for all that wait, once they fill `PIPE_BUF` bytes or `WRITE_AFTER` seconds after
        the first of them (a write a line was a third of the access log's cost, and one at
        each turn of the event loop still ≈ 3 µs a turn: bench/README.md, "ninth round");
        at once where no loop runs. A write holds at most `PIPE_BUF` bytes (a longer line
        goes alone), so the workers' writes to one pipe never interleave inside a line.
        Any other record of this handler, a flush (the service's shutdown and
        `logging.shutdown` at exit make one) and its close write them first, so its lines
        keep their order."""
        size = len(line) + 1 if line.isascii() else len(line.encode()) + 1
        if self._pending_size + size > select.PIPE_BUF:
            self.write_pending()
        self._pending.append(line)
        self._pending_size += size
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.write_pending()
            return
        if self._scheduled_on is not loop:  # no write due on this loop yet
            self._scheduled_on = loop
            loop.call_later(WRITE_AFTER, self._write_when_due)

    def write_pending(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            lines, self._pending, self._pending_size = self._pending, [], 0
            if lines:
                self.stream.write(self.terminator.join(lines) + self.terminator)
                self.stream.flush()

    def _write_when_due(self) -> None:
        """The write `add_line` scheduled: whatever waits goes out (lines written sooner,
        having filled `PIPE_BUF`, are gone already), and the next line schedules the next."""
        with self.lock:  # type: ignore[union-attr]
            self._scheduled_on = None
            try:
                self.write_pending()
            except Exception:  # as `emit` would: reported, never raised into the loop
                record = logging.makeLogRecord({"name": ACCESS_LOG.name, "msg": "lines"})
                self.handleError(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write_pending()
        except Exception:  # as `StreamHandler.emit` does for its own line
            self.handleError(record)
        super().emit(record)

    def flush(self) -> None:
        self.write_pending()
        super().flush()

    def close(self) -> None:
        self.write_pending()
        super().close()


def _sole_handler() -> ServiceHandler | None:
    """The service's handler when it is the only place an access line would go, written
    as `logging` would: no handler on `app.access` or `app`, both propagating, no filter
    on `app.access`, no record factory of another (OpenTelemetry's adds fields), the
    service's own filter and formatter."""
    logger: logging.Logger | None = ACCESS_LOG
    while logger is not None and logger is not logging.root:
        if logger.handlers or not logger.propagate:
            return None
        logger = logger.parent
    handlers = logging.root.handlers
    if len(handlers) != 1 or ACCESS_LOG.filters:
        return None
    handler = handlers[0]
    if type(handler) is not ServiceHandler or len(handler.filters) != 1:
        return None
    expected = OrjsonFormatter if handler.log_format == "json" else _TextFormatter
    if handler.level > logging.INFO or type(handler.formatter) is not expected:
        return None
    if logging.getLogRecordFactory() is not logging.LogRecord:
        return None
    return handler


def _access_fields(
    method: str, path: str, route: str, status: int, duration_ms: float, principal: str
) -> dict[str, Any]:
    return {
        "method": method,
        "path": path,
        "route": route,
        "status": status,
        "duration_ms": duration_ms,
        "principal": principal,
    }


def log_access(
    method: str, path: str, route: str, status: int, duration_ms: float, principal: str
) -> None:
    """A request's line in the access log (`app.access`, INFO; docs/RULES.md#logs):
    `GET /path 200 1.2ms`, and in `LOG_FORMAT=json` each of these as a field."""
    handler = _sole_handler()
    if handler is not None:
        try:
            with handler.lock:  # type: ignore[union-attr]
                line = handler.access_line(
                    time.time(),
                    current_request_id() or "-",
                    *(method, path, route, status, duration_ms, principal),
                )
                handler.add_line(line)
            return
        except Exception:  # noqa: S110 - logging's own path reports what failed
            pass
    ACCESS_LOG.info(
        _ACCESS_MESSAGE,
        *(method, path, status, duration_ms),
        extra=_access_fields(method, path, route, status, duration_ms, principal),
    )


def write_waiting_lines() -> None:
    """Out with the access lines still waiting (`ServiceHandler.add_line`): the service's
    shutdown, which may end before their write is due."""
    for handler in logging.root.handlers:
        if isinstance(handler, ServiceHandler):
            with contextlib.suppress(OSError, ValueError):  # a stream closed meanwhile
                handler.write_pending()


def configure_logging(level: str, log_format: str = "text") -> None:
    # No line names its thread, process or source line: not worked out for each record
    # (the logging HOWTO's "Optimization"; a fifth of what an access-log line cost).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    write_waiting_lines()  # the old handler's, before the new handler's
    for existing in list(root.handlers):
        if isinstance(existing, ServiceHandler):
            root.removeHandler(existing)
    root.addHandler(ServiceHandler(log_format))
    root.setLevel(level)
    # Our middleware writes the access log, with the request id; uvicorn's would repeat it.
    logging.getLogger("uvicorn.access").disabled = True
