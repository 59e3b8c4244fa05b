"""Putting FakeArcGIS on the wire: an httpx transport, an ASGI app, a loopback server.

Each needs only something that answers an emulated request (a `Responder`, as
`FakeArcGIS` is), so the emulator and its adaptors do not import each other.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import sniffio

from ._wire import Request, Responder, Response, parse_body

__all__ = ["ArcGISTransport", "asgi_app", "serve"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ArcGISTransport(httpx.AsyncBaseTransport):
    """An httpx transport answered by a FakeArcGIS, in process: no sockets, no threads.

    *fake* is a FakeArcGIS, or anything else with its ``respond`` coroutine.
    """

    def __init__(self, fake: Responder) -> None:
        self.fake = fake

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        url = request.url
        origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
        params, files, malformed = parse_body(
            url.query, body, request.headers.get("content-type", "")
        )
        emulated = Request(
            method=request.method,
            path=url.path,
            params=params,
            headers={k.lower(): v for k, v in request.headers.items()},
            origin=origin,
            url=str(url),
            files=files,
            malformed=malformed,
        )
        answer = await self.fake.respond(emulated)
        if answer.drop:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        return httpx.Response(answer.status, headers=answer.headers, content=answer.body)


def asgi_app(fake: Responder) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI application answered by *fake* (for hypercorn, or httpx.ASGITransport)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host") or "{}:{}".format(*scope["server"])
        query = scope["query_string"].decode("latin-1")
        params, files, malformed = parse_body(
            scope["query_string"], b"".join(chunks), headers.get("content-type", "")
        )
        emulated = Request(
            method=scope["method"],
            path=scope["path"],
            params=params,
            headers=headers,
            origin=f"{scope['scheme']}://{host}",
            url=f"{scope['scheme']}://{host}{scope['path']}" + (f"?{query}" if query else ""),
            files=files,
            malformed=malformed,
        )
        answer = await fake.respond(emulated)
        await _send(send, answer)

    return app


async def _send(send: Send, answer: Response) -> None:
    if answer.drop:
        # Promise a body, send half of nothing, and fail: the server cuts the connection.
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"1000")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"features":[', "more_body": True})
        raise _DroppedConnection("FakeArcGIS dropped this connection on purpose")
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()]
    headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


class _DroppedConnection(Exception):
    """Raised inside the ASGI app to make the server cut a connection."""


class _QuietDrops(logging.Filter):
    """Keep connections dropped on purpose out of the server's error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _DroppedConnection))


@asynccontextmanager
async def serve(fake: Responder) -> AsyncIterator[str]:
    """Serve *fake* over HTTP on 127.0.0.1 (a free port); yield its origin URL."""
    try:
        from hypercorn.config import Config
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise RuntimeError(
            "FakeArcGIS.serve() needs hypercorn: pip install 'archibald[server]'"
        ) from exc
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.listen(1024)  # connections queue up until hypercorn accepts them (1,000 at once)
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]  # hypercorn owns the socket from here
    config.accesslog = None
    errorlog = logging.getLogger("archibald.testing.server")
    if not any(isinstance(f, _QuietDrops) for f in errorlog.filters):
        errorlog.addFilter(_QuietDrops())
    config.errorlog = errorlog
    config.graceful_timeout = 1.0
    app = asgi_app(fake)
    stop = anyio.Event()
    if sniffio.current_async_library() == "trio":
        from hypercorn.trio import serve as hypercorn_serve
    else:
        from hypercorn.asyncio import serve as hypercorn_serve  # type: ignore[assignment]

    origin = f"http://127.0.0.1:{port}"
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(_run, hypercorn_serve, app, config, stop)
        try:
            yield origin
        except Exception as exc:
            # Raised in the caller's block: re-raised as it is once the server has
            # stopped, rather than wrapped in the task group's ExceptionGroup.
            failure = exc
        finally:
            stop.set()
    if failure is not None:
        raise failure


async def _run(serve_fn: Any, app: Any, config: Any, stop: anyio.Event) -> None:
    await serve_fn(app, config, shutdown_trigger=stop.wait, mode="asgi")
