"""A fake Context7 API: ``GET /v1/<org>/<project>?topic=&tokens=&type=txt`` answers text."""

from __future__ import annotations

from fakes.web import FakeServer, Request, Response

ASYNCIO_DOCS = "TITLE: Running tasks concurrently\nDESCRIPTION: asyncio.gather(...) runs ..."


class FakeContext7(FakeServer):
    """Knows the libraries in ``docs`` (id without the leading slash -> text); 404 otherwise."""

    def __init__(self, docs: dict[str, str] | None = None) -> None:
        self.docs = {"python/asyncio": ASYNCIO_DOCS} if docs is None else docs
        super().__init__(self._answer)

    def _answer(self, request: Request) -> Response:
        library = request.path.removeprefix("/v1/")
        if request.method != "GET" or library not in self.docs:
            return Response(404, b"Library not found", {"Content-Type": "text/plain"})
        return Response(200, self.docs[library].encode(), {"Content-Type": "text/plain"})
