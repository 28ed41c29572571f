"""What a request may cost the hub before it is answered: who it is, how big, how deep, how long.

``RequestGuard`` is a pure ASGI middleware in front of the application. A declared
``Content-Length`` over the route's limit (``body_limit``: 20 MB for ``/fhir/Bundle``, 2 MB for one
patient's Bundle to score, 64 KB elsewhere) is refused at once. For every path that is not public
it then checks the bearer token *before a byte of the body is read*: an anonymous caller cannot
make the hub parse anything (an anonymous ``{`` is a 401, not a 422). It reads the body itself,
refusing it (413, a one-line reason) as soon as the bytes streamed exceed the limit, or when its
JSON nests deeper than ``MAX_JSON_DEPTH`` (checked on the raw bytes, before any parser recurses into
it). The application receives the body already read. A refusal under ``/fhir/`` is a FHIR
OperationOutcome, as FHIR clients expect.

``statement_timeout`` bounds each request's database work: PostgreSQL's ``statement_timeout``, or a
timer that interrupts the DuckDB cursor; either way the caller gets a 503 with the reason.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs

import duckdb
import numpy as np
import orjson
from fastapi import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from healthmesh.cdm import HubDatabase
from healthmesh.errors import CDMError
from healthmesh.web.asgi import replaying

__all__ = [
    "BODY_SCOPE_KEY",
    "DEFAULT_BODY_LIMIT",
    "MAX_JSON_DEPTH",
    "STATEMENT_TIMEOUT_S",
    "RequestGuard",
    "body_limit",
    "json_depth",
    "route_template",
    "statement_timeout",
]

MB = 1024 * 1024
DEFAULT_BODY_LIMIT = 64 * 1024
# A whole FHIR transaction may be large; one patient's Bundle for scoring is some 70 KB.
_ROUTE_BODY_LIMITS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"^/fhir/Bundle/?$"), 20 * MB),
    (re.compile(r"^/risk/[^/]+/score/?$"), 2 * MB),
)
MAX_JSON_DEPTH = 64
STATEMENT_TIMEOUT_S = 30.0
_FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data")
# Quotes stay, every bracket becomes "[" or "]" (depth does not care which kind), the rest goes.
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'{}[]"')
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_PASSES_UP_TO = 64 * 1024  # brackets; beyond, a vectorised pass (linear in the size, whatever the depth)
# Where the guard leaves the body it read, for the route to take as it is (``JsonRoute``) rather than
# gather it again from the replayed message (Starlette's ``Request.body`` copies it).
BODY_SCOPE_KEY = "healthmesh.body"
_COUNT_UP_TO = 16 * 1024  # bytes; a larger body is scanned for depth without first counting its brackets


def body_limit(path: str) -> int:
    """The most bytes a request body to ``path`` may have."""
    for pattern, limit in _ROUTE_BODY_LIMITS:
        if pattern.match(path):
            return limit
    return DEFAULT_BODY_LIMIT


def json_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep the JSON text ``body`` nests, brackets inside strings not counted; ``limit + 1`` stands
    for anything deeper than ``limit`` (enough to refuse it).

    Exact for valid JSON; for anything else a figure the parser will refuse anyway. It reads bytes,
    not a parse, with bytes methods and one regular expression that keep the GIL (about 40 us for a
    70 KB Bundle): the event loop is not handed to another thread in the middle of a request.
    """
    if b"\\" in body:
        body = _ESCAPE.sub(b"", body)  # escapes as a lexer reads them, left to right: \\ \" \n \u
    brackets = body.translate(_BRACKETS, _NOT_STRUCTURE).replace(b'""', b"")  # strings without brackets go
    if b'"' in brackets:  # strings holding brackets: keep only what lies between the strings
        brackets = b"".join(brackets.split(b'"')[::2])
    if len(brackets) > _PASSES_UP_TO:  # one linear pass rather than one pass per level
        chars = np.frombuffer(brackets, dtype=np.uint8)
        return int(np.cumsum((chars == 91).astype(np.int32) - (chars == 93)).max())
    depth = 0
    while brackets and depth <= limit:  # each pass removes the innermost level
        inner = brackets.replace(b"[]", b"")
        if len(inner) == len(brackets):  # unbalanced: the parser will say so
            break
        brackets, depth = inner, depth + 1
    return depth


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The template of the route ``scope`` matches (``/risk/{model}/score``), never the raw path."""
    route = scope.get("route")
    if route is not None and getattr(route, "path", None) and not hasattr(route, "original_router"):
        return str(route.path)
    for candidate in routes:
        match, _ = candidate.matches(scope)
        if match is not Match.NONE:
            return str(getattr(candidate, "path", "") or "(unnamed route)")
    return "(no route)"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


def _bearer(scope: Scope) -> str | None:
    value = _header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _token_client(scope: Scope, body: bytes) -> str | None:
    """The client a ``POST /token`` names (form field or HTTP Basic), for the audit log."""
    value = _header(scope, b"authorization")
    if value is not None:
        scheme, _, encoded = value.decode("latin-1").partition(" ")
        if scheme.lower() == "basic":
            try:
                return base64.b64decode(encoded, validate=False).decode("utf-8", "replace").partition(":")[0]
            except (binascii.Error, ValueError):
                return "(malformed basic credentials)"
    form = parse_qs(body.decode("latin-1"), max_num_fields=20) if body else {}
    names = form.get("client_id")
    return names[0] if names else None


class _Refusal(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


class RequestGuard:
    """Authenticate, then read and bound the body, before the application sees the request."""

    def __init__(
        self,
        app: ASGIApp,
        verify: Callable[[str], Any],
        is_public: Callable[[str], bool],
        token_path: str = "/token",
    ) -> None:
        self.app = app
        self.verify = verify
        self.is_public = is_public
        self.token_path = token_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        path: str = scope["path"]
        limit = body_limit(path)
        try:
            _check_declared_length(scope, limit)  # costs nothing: refused before the token is even read
            if not self.is_public(path):
                self._authenticate(scope, state)
            body, closed = await self._read_body(scope, receive, limit)
        except _Refusal as refusal:
            await _answer(send, refusal, fhir=path.startswith("/fhir/"))
            return
        if closed:  # the client went away before its body arrived: nothing to answer
            return
        scope[BODY_SCOPE_KEY] = body
        if path == self.token_path:
            client = _token_client(scope, body)
            if client is not None:
                state["audit_subject"] = client[:200] or "(empty client id)"
        await self.app(scope, replaying(body, receive), send)

    def _authenticate(self, scope: Scope, state: dict[str, Any]) -> None:
        token = _bearer(scope)
        if token is None:
            state["audit_denied"] = "anonymous"
            raise _Refusal(
                401, "missing bearer token; get one at POST /token", {"WWW-Authenticate": "Bearer"}
            )
        try:
            principal = self.verify(token)
        except HTTPException as error:
            state["audit_denied"] = "invalid-token"
            raise _Refusal(401, str(error.detail), {"WWW-Authenticate": "Bearer"}) from None
        # The role guard reads it rather than verify the same token twice; the audit names the caller
        # even of a request no route answers.
        state["verified_principal"] = state["principal"] = principal

    async def _read_body(self, scope: Scope, receive: Receive, limit: int) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", True
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _Refusal(413, f"the body is over {limit} bytes, the most this route takes")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        content_type = (_header(scope, b"content-type") or b"").lower()
        # A body with no more opening brackets than the limit cannot nest deeper (most bodies but Bundles).
        if body and not content_type.startswith(_FORM_TYPES) and _openings(body) > MAX_JSON_DEPTH:
            depth = json_depth(body)
            if depth > MAX_JSON_DEPTH:
                raise _Refusal(413, f"the JSON body nests {depth} levels deep; at most {MAX_JSON_DEPTH}")
        return body, False


def _openings(body: bytes) -> int:
    """A bound on how deep ``body`` can nest: its opening brackets, strings included, counted when
    that is cheap; for a large body (a Bundle: thousands of brackets) its length, so it is scanned."""
    if len(body) <= MAX_JSON_DEPTH or len(body) > _COUNT_UP_TO:
        return len(body)
    return body.count(b"[") + body.count(b"{")


def _check_declared_length(scope: Scope, limit: int) -> None:
    declared = _header(scope, b"content-length")
    if declared is None:
        return
    if not declared.strip().isdigit():
        raise _Refusal(400, "Content-Length is not a number")
    if int(declared) > limit:
        raise _Refusal(413, f"the body is {int(declared)} bytes; this route takes at most {limit}")


async def _answer(send: Send, refusal: _Refusal, fhir: bool = False) -> None:
    document: dict[str, Any] = {"detail": refusal.reason}
    if fhir:
        code = {401: "login", 413: "too-costly"}.get(refusal.status, "invalid")
        issue = {"severity": "error", "code": code, "diagnostics": refusal.reason}
        document = {"resourceType": "OperationOutcome", "issue": [issue], **document}
    payload = orjson.dumps(document)
    media = b"application/fhir+json" if fhir else b"application/json"
    headers = [(b"content-type", media), (b"content-length", str(len(payload)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in refusal.headers.items()]
    # The body was not read: ask the client to close rather than send the rest on this connection.
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


# -- statement timeout ---------------------------------------------------------------------------


def _timeout_answer(seconds: float) -> HTTPException:
    return HTTPException(503, f"the query ran past the hub's {seconds:g} s statement limit; narrow it")


@contextmanager
def statement_timeout(db: HubDatabase, seconds: float = STATEMENT_TIMEOUT_S) -> Iterator[HubDatabase]:
    """Statements run on ``db`` inside stop after ``seconds`` (a 503 with the reason, never a 500)."""
    if db.dialect == "postgres":
        db.execute(f"SET statement_timeout = {int(seconds * 1000)}")
        try:
            yield db
        except CDMError as error:
            if "statement timeout" in str(error):
                raise _timeout_answer(seconds) from None
            raise
        return
    fired = threading.Event()

    def interrupt() -> None:
        fired.set()
        db.con.interrupt()

    timer = threading.Timer(seconds, interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield db
    except (CDMError, duckdb.Error):
        if fired.is_set():
            raise _timeout_answer(seconds) from None
        raise
    finally:
        timer.cancel()
