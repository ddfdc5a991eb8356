"""A tiny async HTTP endpoint for ``/metrics`` (Prometheus) and ``/healthz`` (readiness).

prometheus_client's own ``start_http_server`` runs a thread outside the process's task group;
this serves the same exposition from inside it, so it starts and stops with the runtime.
It speaks just enough HTTP/1.1 for scrapers and probes: one request per connection.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.abc
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

_MAX_HEAD = 16 * 1024
_READ_TIMEOUT = 10.0


async def serve_http(
    registry: CollectorRegistry,
    *,
    port: int,
    host: str = "0.0.0.0",
    ready: Callable[[], bool],
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /metrics`` and ``GET /healthz`` until cancelled.

    ``/metrics`` is the registry's exposition (OpenMetrics when the scraper asks for it);
    ``/healthz`` answers 200 ``ok`` while ``ready()`` is true, else 503 ``not ready``.
    Start it with ``await task_group.start(partial(serve_http, ...))``: the value started is
    the bound port (useful with ``port=0``).

    Raises:
        OSError: the port cannot be bound.
    """
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    bound = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                with anyio.fail_after(_READ_TIMEOUT):
                    head = await _read_head(stream)
                if head is not None:
                    await stream.send(_respond(head, registry, ready))
            except (TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return

    async with listener:
        task_status.started(bound)
        await listener.serve(handle)


async def _read_head(stream: anyio.abc.SocketStream) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        if len(data) > _MAX_HEAD:
            return None
        data += await stream.receive()
    return data


def _respond(head: bytes, registry: CollectorRegistry, ready: Callable[[], bool]) -> bytes:
    lines = head.decode("latin-1").splitlines()
    parts = lines[0].split() if lines else []
    if len(parts) != 3:
        return _response(400, b"bad request\n")
    method, target, _version = parts
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    path = target.split("?", 1)[0]
    if path not in ("/metrics", "/healthz"):
        return _response(404, b"not found\n")
    if method not in ("GET", "HEAD"):
        return _response(405, b"method not allowed\n", extra="Allow: GET, HEAD\r\n")
    if path == "/healthz":
        healthy = _is_ready(ready)
        body = b"ok\n" if healthy else b"not ready\n"
        return _response(200 if healthy else 503, body, head_only=method == "HEAD")
    encoder, content_type = choose_encoder(headers.get("accept", ""))
    return _response(200, encoder(registry), content_type, head_only=method == "HEAD")


def _is_ready(ready: Callable[[], bool]) -> bool:
    try:
        return bool(ready())
    except Exception:
        return False


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            503: "Service Unavailable"}  # fmt: skip


def _response(
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    *,
    head_only: bool = False,
    extra: str = "",
) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: close\r\n{extra}\r\n"
    ).encode("latin-1")
    return head if head_only else head + body
