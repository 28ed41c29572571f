"""The hub service: ``create_app(config)`` builds the FastAPI application over one hub's CDM.

Every route but the few in ``PUBLIC_PATHS`` (and the page assets under ``/static/``) is guarded by
a role (``require_roles``). In front of the application, ``RequestGuard`` checks the bearer token
before any body is read and bounds the body's size and nesting (``healthmesh.api.limits``); in front
of that, ``AuditMiddleware`` writes every request, admitted or refused, anonymous or not (liveness
probes of ``/health`` aside), to the audit log before its answer leaves: no audit row, no answer.
The API's pages (Swagger UI at ``/docs``) load only assets the hub serves itself.
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from healthmesh.api.audit import MAX_FIELD, AuditEntry
from healthmesh.api.auth import default_clients, iter_routes, parse_clients
from healthmesh.api.deps import HubConfig, HubState
from healthmesh.api.errors import install_error_handlers
from healthmesh.api.limits import RequestGuard, route_template
from healthmesh.api.routes import ROUTERS
from healthmesh.api.routes.risk import AsOfProbes
from healthmesh.config import Settings, hub_keys

__all__ = [
    "PUBLIC_PATHS",
    "STATIC_PREFIX",
    "AuditMiddleware",
    "config_from_settings",
    "create_app",
    "is_public",
]

# Routes that need no token: liveness, the token endpoint and the API description. Nothing else.
PUBLIC_PATHS = frozenset({"/health", "/token", "/openapi.json", "/docs", "/docs/oauth2-redirect"})
# The API pages' own assets (Swagger UI's script and style), served by the hub: no CDN, no token.
STATIC_PREFIX = "/static/"
# Liveness probes carry no data and come every few seconds: they alone are not audited.
UNAUDITED_PATHS = frozenset({"/health"})
# Addresses of reverse proxies whose X-Forwarded-For the audit log believes (comma-separated).
TRUSTED_PROXIES_ENV = "HEALTHMESH_TRUSTED_PROXIES"

PURPOSE_HEADER = b"x-purpose"
FORWARDED_HEADER = b"x-forwarded-for"


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(STATIC_PREFIX)


def _trusted_proxies() -> frozenset[str]:
    return frozenset(p.strip() for p in os.environ.get(TRUSTED_PROXIES_ENV, "").split(",") if p.strip())


def caller_address(scope: Scope, trusted_proxies: frozenset[str]) -> str | None:
    """``host:port`` of the peer; behind a trusted proxy, the address that proxy says it served."""
    peer = scope.get("client")
    if not peer:
        return None
    host, port = str(peer[0]), peer[1]
    address = f"{host}:{port}"
    if host in trusted_proxies:
        for key, value in scope.get("headers", ()):
            if key == FORWARDED_HEADER:
                # The right-most hop is the one the trusted proxy appended; anything left of it is the
                # client's own claim.
                forwarded = bytes(value).decode("latin-1").split(",")[-1].strip()
                if forwarded:
                    return f"{forwarded} (via {address})"[:MAX_FIELD]
    return address


class AuditMiddleware:
    """Writes one audit entry per request, just before its response starts (or when it ends unanswered)."""

    def __init__(
        self, app: ASGIApp, state: HubState, routes: Sequence[BaseRoute], trusted_proxies: frozenset[str]
    ) -> None:
        self.app = app
        self.state = state
        self.routes = routes
        self.trusted_proxies = trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNAUDITED_PATHS:
            await self.app(scope, receive, send)
            return
        written = False

        async def audited_send(message: Message) -> None:
            nonlocal written
            if message["type"] == "http.response.start" and not written:
                written = True
                await self.state.audit.write(self._entry(scope, int(message["status"])))
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        except Exception:
            if not written:
                written = True
                await self.state.audit.write(self._entry(scope, 500))
            raise
        if not written:  # the client left before an answer: the attempt is still on record
            await self.state.audit.write(self._entry(scope, 499))

    def _entry(self, scope: Scope, status: int) -> AuditEntry:
        state: dict[str, Any] = scope.get("state", {})
        principal = state.get("principal")
        if principal is not None:
            subject, role = principal.subject, principal.role
        else:
            subject, role = state.get("audit_subject") or state.get("audit_denied", "anonymous"), "-"
        purpose = state.get("purpose")
        if purpose is None:
            purpose = next(
                (bytes(v).decode("latin-1") for k, v in scope.get("headers", ()) if k == PURPOSE_HEADER), None
            )
        persons = state.get("persons")
        return AuditEntry(
            subject, role, scope["method"], route_template(self.routes, scope), purpose, state.get("rows_touched"),
            status, caller_address(scope, self.trusted_proxies), tuple(persons) if persons is not None else None,
        )  # fmt: skip


def _static_dir() -> Path:
    return Path(str(resources.files("healthmesh.web") / "static"))


def _add_api_pages(app: FastAPI, title: str) -> None:
    """Swagger UI from the hub's own copy of swagger-ui-dist (``healthmesh/web/static/swagger``)."""
    app.mount(STATIC_PREFIX.rstrip("/"), StaticFiles(directory=_static_dir()), name="static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{title}: API",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{STATIC_PREFIX}swagger/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_PREFIX}swagger/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_PREFIX}swagger/favicon-32x32.png",
            # No spec validator badge: it would send the description to validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


def create_app(config: HubConfig) -> FastAPI:
    """The FastAPI application of one hub (opens its database and warms its scorers now)."""
    state = HubState(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Move what start-up built (models, vocabulary, libraries) out of the collector's sight: without
        # it, collections triggered while a request parses its Bundle rescan that heap, and parsing
        # 70 KB of JSON cost 1.3 ms instead of 0.4 ms.
        gc.collect()
        gc.freeze()
        yield
        state.close()

    title = f"healthmesh hub {config.hub}"
    app = FastAPI(
        title=title,
        version="1.0",
        description="A regional health-data hub over the OMOP CDM v5.4: FHIR ingest, catalog, quality, "
        "cohort counts, risk scores, forecasts and the audit log. Person-level rows stay at the hub; "
        "aggregates are released only after disclosure control. Get a token at POST /token "
        "(OAuth2 client credentials) and send it as `Authorization: Bearer <token>`; send "
        "`X-Purpose` to record why.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.hub = state
    app.state.as_of_probes = AsOfProbes()
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    _add_api_pages(app, title)
    # The last added runs first: the audit sees every request, then the guard, then the application.
    app.add_middleware(RequestGuard, verify=state.issuer.verify, is_public=is_public)
    app.add_middleware(
        AuditMiddleware,
        state=state,
        routes=list(iter_routes(app.router.routes)),  # the endpoints themselves, for the route templates
        trusted_proxies=_trusted_proxies(),
    )
    return app


def config_from_settings(
    hub: str,
    db_path: Path,
    models: dict[str, Path] | None = None,
    settings: Settings | None = None,
    scorer_pool: int = 2,
    scoring_processes: int = 0,
) -> HubConfig:
    """A ``HubConfig`` from the ``HEALTHMESH_*`` settings (keys, clients, environment, min cell count).

    The keys come from ``healthmesh.config.hub_keys`` (a weak secret is refused outside development).
    Clients come from ``HEALTHMESH_API_CLIENTS`` (JSON), else one client per role with a secret
    derived from the hub's keys.
    """
    settings = settings or Settings()
    keys = hub_keys(settings, db_path)
    clients_text = settings.api_clients.get_secret_value() if settings.api_clients is not None else None
    clients = parse_clients(clients_text) if clients_text else default_clients(keys, hub)
    return HubConfig(
        hub=hub, db_path=Path(db_path), keys=keys, clients=clients, models=dict(models or {}),
        min_count=settings.min_cell_count, scorer_pool=scorer_pool, environment=settings.environment,
        scoring_processes=scoring_processes,
    )  # fmt: skip
