"""What keeps other web pages and oversized bodies out of the studio: an ASGI middleware.

The studio listens on this machine, but any page a person visits can send requests to it. So:
- the Host header must name one of the studio's hosts (DNS rebinding makes a hostile name
  resolve to 127.0.0.1; its requests still say that name);
- a request that carries an Origin (browsers send one with every cross-site POST, including the
  "simple" multipart ones that need no preflight) must come from the studio's own origin;
- an API request that a browser says comes from another site (`Sec-Fetch-Site: cross-site` or
  `same-site`: an `<img>` or a link on another page, which sends no Origin) is refused; the
  page itself may still be opened from a link;
- a body may not exceed its limit, counted as it arrives: a chunked body has no Content-Length
  to check in advance, so the count stops it at the limit, before it is spooled or parsed;
- the routes that take a CPU for a while (HEAVY_ROUTES: encoding, refining, rendering,
  exporting) run at most HEAVY at once; the others wait here, before their bodies are read and
  without holding a thread, so that the page's light requests (the model, the corpus, the
  sources) are answered at once and waiting uploads take no memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import weakref
from urllib.parse import urlsplit

import anyio
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

LOOPBACK = ("127.0.0.1", "localhost", "::1")
JSON_LIMIT = 8 * 1024 * 1024  # a recipe over 4,096 sources is ~0.3 MB; a kit of 8 x 16 of them
HEAVY = max(2, min(os.cpu_count() or 2, 8))  # heavy requests served at once
# a path ending so (also under a kit's /c/<category>/) is heavy
HEAVY_ROUTES = re.compile(r"/api/(encode|shape|render|match|voices|export/[a-z]+|kit/export|"
                          r"kit/groove|kit/loop|kit/loop/[^/]+/(pads|rebuilt)|"
                          r"(corpus|sources)/[^/]+/recipe)$")
OTHER_SITES = ("cross-site", "same-site")  # Sec-Fetch-Site values that are not the page's own
_LIMITED = "drumlayer.limited"  # set in the scope once a request holds a heavy slot


def host_name(netloc: str) -> str:
    """'127.0.0.1:8765' -> '127.0.0.1', '[::1]:8765' -> '::1'."""
    return (urlsplit("//" + netloc).hostname or "").lower()


class Guard:
    """ASGI middleware: `hosts` the names the studio answers to; `upload_limit` the bytes of a
    multipart body, every other body JSON_LIMIT."""

    def __init__(self, app, hosts: tuple[str, ...] = LOOPBACK, upload_limit: int = 50 << 20,
                 heavy: int = HEAVY):
        self.app, self.upload_limit, self.heavy = app, upload_limit, heavy
        self.hosts = {h.lower().strip("[]") for h in hosts}
        # a limiter per event loop (each belongs to the loop it first waits in)
        self._limiters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if host_name(host) not in self.hosts:
            names = ", ".join(sorted(self.hosts))
            return await _refuse(send, 421, f"this studio answers to {names}, not {host!r}: "
                                 "open it by one of those names (or start it with "
                                 "--allowed_hosts)")
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/").lower() != f"http://{host}".lower():
            return await _refuse(send, 403, f"requests from {origin} are not served: the studio "
                                 "only serves its own page")
        path = scope.get("path", "")
        if headers.get("sec-fetch-site") in OTHER_SITES and "/api/" in path:
            return await _refuse(send, 403, f"a request from another site "
                                 f"(Sec-Fetch-Site: {headers['sec-fetch-site']}) is not served: "
                                 "the studio only serves its own page")
        multipart = headers.get("content-type", "").startswith("multipart/")
        limit = self.upload_limit if multipart else JSON_LIMIT
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            return await _refuse(send, 413, _too_large(limit, multipart))
        receive = _counted(receive, limit, multipart)
        if scope.get(_LIMITED) or not HEAVY_ROUTES.search(path):
            return await self.app(scope, receive, send)
        async with self._limiter():
            return await self.app({**scope, _LIMITED: True}, receive, send)

    def _limiter(self) -> anyio.CapacityLimiter:
        loop = asyncio.get_running_loop()
        if loop not in self._limiters:
            self._limiters[loop] = anyio.CapacityLimiter(self.heavy)
        return self._limiters[loop]


def add_error_handlers(app: FastAPI, *unprocessable: type[Exception]) -> None:
    """A request body the app cannot take is a 422 saying where and why, without echoing the
    input (it may hold NaN, an infinity or a lone surrogate, which JSON cannot carry: FastAPI's
    own handler would fail on them with a 500); so is each exception type `unprocessable`."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return JSONResponse(status_code=422, content={"detail": [
            {"loc": [x if isinstance(x, int) else str(x).encode("utf-8", "backslashreplace")
                     .decode() for x in e.get("loc", ())],
             "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]})

    for kind in unprocessable:
        @app.exception_handler(kind)
        async def said(request: Request, exc: Exception):
            return JSONResponse(status_code=422, content={"detail": str(exc)})


def _too_large(limit: int, multipart: bool) -> str:
    if multipart:
        return (f"upload over the studio's limit of {limit / 2**20:g} MB; trim the file or "
                "restart the studio with a larger --max_upload_mb")
    return f"request body over {limit / 2**20:g} MB: a recipe is far smaller"


def _counted(receive, limit: int, multipart: bool):
    """receive, raising a 413 once the body passes limit bytes (FastAPI turns an HTTPException
    raised while it reads the body into that response)."""
    got = 0

    async def wrapped():
        nonlocal got
        message = await receive()
        if message["type"] == "http.request":
            got += len(message.get("body", b""))
            if got > limit:
                # and close the connection, so that the sender stops rather than the server
                # reading (and dropping) the rest
                raise HTTPException(413, _too_large(limit, multipart),
                                    headers={"Connection": "close"})
        return message

    return wrapped


async def _refuse(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
