"""The coordinator's API: researchers submit studies, hubs pull them and post what they released.

Hubs pull (as vantage6 nodes do): a hub's agent long-polls ``GET /hub/studies`` and is answered the
moment a study for it is submitted, so a federated count costs a few round trips on open
connections, not a process start-up. A researcher long-polls ``GET /studies/{id}?wait=S`` the same
way for the answer. Nothing here reads a hub's files: hubs and researchers reach the coordinator
over HTTP(S) only, each with its own bearer credential (``NetworkStore.authenticate``).

Errors are one line: 401 (no or unknown credential), 403 (a hub route called by a researcher or
the reverse), 404 (no such study of yours: the same answer whether it exists or belongs to
someone else), 409 (a state change the study's state does not allow), 413, 422 (a bad request).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from healthmesh.errors import AuthError, CohortError, FederationError
from healthmesh.network.store import Caller, NetworkStore, StudyConflict, StudyNotFound
from healthmesh.network.studies import StudyRequest, combine_results
from healthmesh.web.asgi import replaying

__all__ = ["MAX_REQUEST_BYTES", "MAX_RESULT_BYTES", "MAX_WAIT_S", "BodyLimit", "create_network_app"]

log = logging.getLogger(__name__)

MAX_WAIT_S = 30.0  # the longest a long-poll is held open
MAX_RESULT_BYTES = 8 * 1024 * 1024  # a hub's released result (a characterization is the largest)
EXPIRY_CHECK_S = 0.5
MAX_REQUEST_BYTES = 1024 * 1024  # any other body (a study request with its cohort definition)


class Signals:
    """Wake-ups for long-polls: one per hub (a study for it) and one per study (a hub's part changed).

    An event is set once and replaced: a waiter takes the current event before it reads the store,
    so a change made after its read sets the event it waits on (nothing is missed).
    """

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def current(self, key: str) -> asyncio.Event:
        return self._events.setdefault(key, asyncio.Event())

    def fire(self, key: str) -> None:
        event = self._events.pop(key, None)
        if event is not None:
            event.set()


async def _wait(event: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout=seconds)
    except TimeoutError:
        pass


class BodyLimit:
    """Reads a request's body before the app does and answers 413 past its route's limit.

    Buffering is fine here: the largest body allowed is a hub's result, a few MiB at most. Counting
    the bytes as they come also covers a body sent without a Content-Length (chunked).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = MAX_RESULT_BYTES if scope["path"].endswith("/result") else MAX_REQUEST_BYTES
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                response = JSONResponse({"detail": f"the body may be at most {limit} bytes"}, status_code=413)
                await response(scope, receive, send)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body"))
        await self.app(scope, replaying(b"".join(chunks), receive), send)


class StateChange(BaseModel):
    state: Literal["waiting", "approved", "running", "refused", "failed"]
    note: str | None = Field(
        default=None, max_length=500, description="the reason (refused, failed) or a note"
    )


class ReleasedResult(BaseModel):
    result: dict[str, Any] = Field(description="the hub's answer, as its release path released it")


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "missing bearer credential", headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


def _store(request: Request) -> NetworkStore:
    return request.app.state.store  # type: ignore[no-any-return]


def caller(request: Request) -> Caller:
    try:
        return _store(request).authenticate(_bearer(request))
    except AuthError as error:
        raise HTTPException(401, str(error), headers={"WWW-Authenticate": "Bearer"}) from None


def researcher(who: Annotated[Caller, Depends(caller)]) -> Caller:
    if who.kind != "researcher":
        raise HTTPException(403, "this route is for researchers; a hub credential cannot use it")
    return who


def hub(who: Annotated[Caller, Depends(caller)]) -> Caller:
    if who.kind != "hub":
        raise HTTPException(403, "this route is for hubs; a researcher's token cannot use it")
    return who


Anyone = Annotated[Caller, Depends(caller)]
Researcher = Annotated[Caller, Depends(researcher)]
Hub = Annotated[Caller, Depends(hub)]
Wait = Annotated[float, Query(ge=0, le=MAX_WAIT_S, description="hold the answer up to this many seconds")]


def create_network_app(db_path: Path | str) -> FastAPI:
    """The coordinator's FastAPI application over its SQLite file."""
    store = NetworkStore(db_path)
    signals = Signals()

    async def expire_overdue() -> None:
        # Deadlines pass without a request to notice them: a second's resolution is plenty.
        while True:
            try:
                for study_id in store.expire():
                    signals.fire(f"study:{study_id}")
            except sqlite3.Error as error:  # the file busy past its timeout: try again next time
                log.warning("deadlines not checked: %s", error)
            await asyncio.sleep(EXPIRY_CHECK_S)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        expiry = asyncio.create_task(expire_overdue())
        yield
        expiry.cancel()
        store.close()

    app = FastAPI(
        title="healthmesh network coordinator",
        version="1.0",
        description="Hubs, researchers and studies of a healthmesh network. Researchers submit studies; "
        "each hub's policy runs them or holds them for its admin; hubs post only released results.",
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.store = store
    app.add_middleware(BodyLimit)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        return JSONResponse({"detail": f"{where}: {message}"}, status_code=422)

    def document(study_id: str, who: str | None) -> dict[str, Any]:
        try:
            study = store.study(study_id, who)
        except StudyNotFound as error:
            raise HTTPException(404, str(error)) from None
        study["network"] = combine_results(study["kind"], study["hubs"])
        return study

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/hubs")
    async def list_hubs(who: Anyone) -> list[dict[str, Any]]:
        """The registered hubs: name, region, role, address and catalog entry (no credentials)."""
        return store.hubs()

    @app.post("/studies", status_code=201)
    async def submit(body: StudyRequest, who: Researcher) -> dict[str, Any]:
        """Submit a study; every hub it names (default: all) gets it at once."""
        try:
            body.check_cohort()
            hubs = body.hubs or [h["name"] for h in store.hubs()]
            study_id = store.submit(who.name, body.purpose, body.kind, body.spec(), hubs, body.deadline_s)
        except (CohortError, FederationError) as error:
            raise HTTPException(422, str(error)) from None
        for name in hubs:
            signals.fire(f"hub:{name}")
        return document(study_id, who.name)

    @app.get("/studies")
    async def my_studies(who: Researcher) -> list[dict[str, Any]]:
        return store.studies_of(who.name)

    @app.get("/studies/{study_id}")
    async def study(study_id: str, who: Researcher, wait: Wait = 0.0) -> dict[str, Any]:
        """The study, each hub's state and released result, and the network figure.

        With ``wait``, answers as soon as the study is finished (every hub done, refused or failed),
        or after ``wait`` seconds with its state then.
        """
        deadline = time.monotonic() + wait
        current = document(study_id, who.name)
        while current["state"] != "finished" and time.monotonic() < deadline:
            # Taken before the second read: a change after that read sets this event. Only open
            # studies get one, and the change that finishes a study removes it.
            event = signals.current(f"study:{study_id}")
            current = document(study_id, who.name)
            if current["state"] == "finished":
                break
            await _wait(event, deadline - time.monotonic())
            current = document(study_id, who.name)
        return current

    @app.get("/hub/studies")
    async def pull(who: Hub, wait: Wait = 0.0, again: bool = False) -> list[dict[str, Any]]:
        """Studies waiting for this hub that it has not been handed yet (``again``: all waiting ones)."""
        deadline = time.monotonic() + wait
        while True:
            event = signals.current(f"hub:{who.name}")
            studies = store.deliver(who.name, again=again)
            remaining = deadline - time.monotonic()
            if studies or remaining <= 0:
                return studies
            await _wait(event, remaining)

    @app.get("/hub/waiting")
    async def waiting(who: Hub) -> list[dict[str, Any]]:
        """Every study waiting at this hub (what its admin decides on)."""
        return store.waiting_at(who.name)

    @app.get("/hub/studies/{study_id}")
    async def hub_study(study_id: str, who: Hub) -> dict[str, Any]:
        try:
            return store.study_for_hub(study_id, who.name)
        except StudyNotFound as error:
            raise HTTPException(404, str(error)) from None

    def change(study_id: str, hub_name: str, state: str, **kwargs: Any) -> dict[str, Any]:
        try:
            changed = store.transition(study_id, hub_name, state, **kwargs)
        except StudyNotFound as error:
            raise HTTPException(404, str(error)) from None
        except StudyConflict as error:
            raise HTTPException(409, str(error)) from None
        signals.fire(f"study:{study_id}")
        return changed

    @app.post("/hub/studies/{study_id}/state")
    async def set_state(study_id: str, body: StateChange, who: Hub) -> dict[str, Any]:
        """This hub's decision or progress on a study (refused and failed carry the reason)."""
        return change(study_id, who.name, body.state, note=body.note)

    @app.post("/hub/studies/{study_id}/result")
    async def post_result(study_id: str, request: Request, who: Hub) -> dict[str, Any]:
        """This hub's released result (at most ``MAX_RESULT_BYTES``); the study's part at this hub is done."""
        raw = await request.body()
        try:
            body = ReleasedResult.model_validate_json(raw)
        except ValueError:
            raise HTTPException(422, 'the body must be {"result": {...}}') from None
        return change(study_id, who.name, "done", result=body.result)

    return app
