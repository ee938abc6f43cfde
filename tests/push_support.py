"""Real parts for the push tests: an HTTP receiver in a thread (what a webhook endpoint
is), and an event-stream reader that speaks ASGI to the app itself, or HTTP to a server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
from fastapi import FastAPI
from standardwebhooks.webhooks import Webhook

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 15) -> T:
    """What `probe` returns once it returns something: for state the service records in
    the background (a delivery's row after its attempt). Probed every 20 ms; fails after
    `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still nothing after {timeout}s")
        await asyncio.sleep(0.02)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def verified(self, secret: str) -> dict[str, Any]:
        """The body, verified with the Standard Webhooks library (raises if it does not)."""
        result: dict[str, Any] = Webhook(secret).verify(self.body, self.headers)
        return result

    @property
    def message(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1: records every request, answers what `answer` says
    (a status per request, in order, then 204), and can hold requests until released."""

    answers: list[int] = field(default_factory=list)
    hold: threading.Event | None = None  # set: answer; unset: keep the request waiting
    tls: tuple[Path, Path] | None = None  # (certificate chain, key): serve HTTPS
    received: list[Received] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _server: ThreadingHTTPServer | None = None

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                record = Received(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time()
                )
                with receiver._changed:
                    receiver.received.append(record)
                    status = receiver.answers.pop(0) if receiver.answers else 204
                    receiver._changed.notify_all()
                if receiver.hold is not None:
                    receiver.hold.wait(30)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.hold is not None:
            self.hold.set()
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        if self.tls is not None:  # by name: the certificate is the name's
            return f"https://localhost:{self._server.server_address[1]}/hooks/izin-siaran"
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/izin-siaran"

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 15
    ) -> list[Received]:
        """Block until `predicate(received)` holds (woken by each request), or fail."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.received), timeout):
                raise AssertionError(f"not received in {timeout}s: {self.received}")
            return list(self.received)

    async def wait(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 15
    ) -> list[Received]:
        return await asyncio.to_thread(self.wait_for, predicate, timeout)

    async def count(self, n: int, timeout: float = 15) -> list[Received]:
        return await self.wait(lambda got: len(got) >= n, timeout)


@dataclass
class Event:
    id: str | None
    event: str | None
    data: str | None
    comment: str | None = None

    @property
    def json(self) -> Any:
        assert self.data is not None
        return json.loads(self.data)


class _Parser:
    """Server-Sent Events, as the WHATWG parsing rules read them (enough for these tests)."""

    def __init__(self) -> None:
        self._buffer = ""
        self._fields: dict[str, str] = {}

    def feed(self, text: str) -> list[Event]:
        self._buffer += text.replace("\r\n", "\n")
        events = []
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            if line == "":
                if self._fields:
                    f = self._fields
                    events.append(Event(f.get("id"), f.get("event"), f.get("data"), f.get(":")))
                self._fields = {}
            elif line.startswith(":"):
                self._fields[":"] = line[1:].strip()
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data" and "data" in self._fields:
                    value = self._fields["data"] + "\n" + value
                self._fields[name] = value
        return events


class EventStream:
    """The event stream read in-process through ASGI (httpx's ASGI transport waits for the
    whole body, which a stream never ends): status and headers first, then event by event;
    leaving disconnects, as a client closing the connection does."""

    def __init__(
        self,
        app: FastAPI,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        path: str = "/api/v1/events/stream",
        *,
        stalled: bool = False,
    ) -> None:
        self._app = app
        # A reader that does not read: the body's first chunk waits until `resume()`.
        self._flowing = asyncio.Event()
        if not stalled:
            self._flowing.set()
        self._headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        self._query = urlencode(params or {}).encode()
        self._path = path
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._started = asyncio.Event()
        self._disconnect = asyncio.Event()
        self._parser = _Parser()
        self._pending: list[Event] = []
        self.status = 0
        self.response_headers: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventStream:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": self._path,
            "raw_path": self._path.encode(),
            "query_string": self._query,
            "root_path": "",
            "headers": [(b"host", b"izin-siaran.test"), *self._headers],
            "client": ("127.0.0.1", 50000),
            "server": ("izin-siaran.test", 80),
        }
        sent_request = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_request
            if not sent_request:
                sent_request = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self._disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                self.response_headers = {k.decode(): v.decode() for k, v in message["headers"]}
                self._started.set()
            elif message["type"] == "http.response.body":
                await self._flowing.wait()
                self._chunks.put_nowait(message.get("body", b""))
                if not message.get("more_body", False):
                    self._chunks.put_nowait(None)

        async def run() -> None:
            try:
                await self._app(scope, receive, send)  # type: ignore[arg-type]
            finally:
                self._chunks.put_nowait(None)
                self._started.set()

        self._task = asyncio.create_task(run())
        async with asyncio.timeout(10):
            await self._started.wait()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._disconnect.set()
        self._flowing.set()
        assert self._task is not None
        try:
            async with asyncio.timeout(10):
                await self._task
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            raise AssertionError("the stream did not end when the client left") from None

    def resume(self) -> None:
        """The stalled reader starts reading."""
        self._flowing.set()

    async def body(self) -> bytes:
        """The whole body of a response that ends (a refusal)."""
        parts = []
        while (chunk := await self._chunks.get()) is not None:
            parts.append(chunk)
        return b"".join(parts)

    async def next(self, timeout: float = 10, *, pings: bool = False) -> Event:
        """The next event (comments skipped unless `pings`); fails after `timeout`."""
        async with asyncio.timeout(timeout):
            while True:
                while self._pending:
                    event = self._pending.pop(0)
                    if pings or event.comment is None or event.data is not None:
                        return event
                chunk = await self._chunks.get()
                if chunk is None:
                    raise EOFError("the stream ended")
                self._pending.extend(self._parser.feed(chunk.decode()))

    async def take(self, n: int, timeout: float = 10) -> list[Event]:
        return [await self.next(timeout) for _ in range(n)]


@contextlib.asynccontextmanager
async def http_stream(
    base_url: str, headers: dict[str, str], params: dict[str, Any] | None = None
) -> AsyncIterator[Callable[[float], Any]]:
    """The event stream of a real server over HTTP; yields `next(timeout) -> Event`."""
    parser, pending = _Parser(), []
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30) as client,
        client.stream("GET", "/api/v1/events/stream", headers=headers, params=params) as response,
    ):
        assert response.status_code == 200, await response.aread()
        chunks = response.aiter_text()

        async def next_event(timeout: float = 10) -> Event:
            async with asyncio.timeout(timeout):
                while True:
                    while pending:
                        event = pending.pop(0)
                        if event.data is not None:
                            return event
                    pending.extend(parser.feed(await anext(chunks)))

        yield next_event


def certificate_authority(folder: Path) -> tuple[Path, tuple[Path, Path]]:
    """A new CA (its certificate in a PEM file) and a certificate it signs for `localhost`
    (chain and key files): an internal receiver's HTTPS, as WEBHOOK_CA_FILE trusts it."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("CA Uji Pemkab Anambas"))
        .issuer_name(name("CA Uji Pemkab Anambas"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "receiver.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (folder / "receiver.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder / "ca.pem", (folder / "receiver.pem", folder / "receiver.key")
