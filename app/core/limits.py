"""Request body size limit: 413 before the body is read when Content-Length says so,
and as soon as a streamed body passes the limit otherwise."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException

from app.core.types import ASGIApp, Message, Receive, Scope, Send

PROBLEM_JSON = b"application/problem+json"


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def _reject(self, scope: Scope, send: Send, status: int, detail: str) -> None:
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Content Too Large" if status == 413 else "Bad Request",
                "status": status,
                "detail": detail,
                "instance": scope.get("path"),
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", PROBLEM_JSON),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.strip().isdigit():
                    await self._reject(scope, send, 400, "invalid Content-Length header")
                    return
                if int(value) > self.limit:
                    await self._reject(
                        scope, send, 413, f"request body larger than {self.limit} bytes"
                    )
                    return
                break
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)  # FastAPI passes HTTPExceptions through
            return message

        await self.app(scope, limited_receive, send)
