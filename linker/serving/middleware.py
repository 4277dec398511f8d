"""ASGI middleware bounding what reading one request may cost: its size, and how long its body may take; and
refusing a URL whose percent-escapes are not UTF-8 (else decoded with replacement characters and answered)."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import unquote_to_bytes


class _Stop(Exception):
    """Raised into the app's ``receive`` to stop it reading; the middleware answers instead."""


def _not_utf8(scope: dict[str, Any]) -> str:
    """Why the request's path or query is not UTF-8 once its %-escapes are decoded (e.g. ``?q=%ED%A0%80``, a
    lone surrogate), or ""."""
    for part, raw in (("path", scope.get("raw_path") or b""), ("query", scope.get("query_string") or b"")):
        try:
            unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError as err:
            return (f"the URL's {part} is not UTF-8 at byte {err.start} once its %-escapes are decoded; "
                    "percent-encode the text as UTF-8")
    return ""


class BodyGuard:
    """A body over *max_body* bytes gets 413, by its Content-Length or while it streams in; a body that does not
    arrive within *read_timeout* seconds (a slow or stalled client) gets 408 and the connection is closed."""

    def __init__(self, app: Any, max_body: int, read_timeout: float | None = None) -> None:
        self.app = app
        self.max_body = max_body
        self.read_timeout = read_timeout

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bad_url = _not_utf8(scope)
        if bad_url:
            await self._answer(send, 400, bad_url)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if self.max_body and declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await self._answer(send, 413, self._too_large(int(declared)))
            return
        seen = 0
        body_done = False
        refusal: tuple[int, str] | None = None
        answered = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout if self.read_timeout else None

        async def guarded_receive() -> dict[str, Any]:
            nonlocal seen, body_done, refusal
            if body_done or deadline is None:  # the body is in: waiting now means waiting for a disconnect
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    refusal = (408, (f"the request body did not arrive within {self.read_timeout:g} s; send it "
                                     "whole and promptly"))
                    raise _Stop from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if self.max_body and seen > self.max_body:
                    refusal = (413, self._too_large(seen))
                    raise _Stop  # the app stops reading; whatever it answers becomes the refusal below
            return message

        async def watched_send(message: dict[str, Any]) -> None:
            nonlocal answered
            if refusal is not None:
                if not answered:
                    answered = True
                    await self._answer(send, *refusal)
                return
            await send(message)

        try:
            await self.app(scope, guarded_receive, watched_send)
        except _Stop:
            pass
        if refusal is not None and not answered:
            await self._answer(send, *refusal)

    def _too_large(self, size: int) -> str:
        return (f"request body of {size} bytes or more is over the limit of {self.max_body} bytes; send fewer or "
                "shorter texts per request")

    @staticmethod
    async def _answer(send: Any, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
