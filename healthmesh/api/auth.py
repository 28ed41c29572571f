"""Who may do what: hub-signed JWT bearer tokens, clients from configuration, role guards.

A token is an HS256 JWT signed with a key derived from the hub's secret (``HEALTHMESH_SECRET_KEY``,
or in development the key file kept beside the hub database). Clients obtain one with the OAuth2
client-credentials flow at ``POST /token``; each route declares the roles it admits with
``require_roles(...)``, and ``route_roles`` lets a test read that declaration back from the app.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import jwt
from fastapi import HTTPException, Request, Security
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import OAuth2
from starlette.routing import BaseRoute

from healthmesh.errors import ConfigError

__all__ = [
    "ROLES",
    "Client",
    "Principal",
    "RoleGuard",
    "TokenIssuer",
    "default_clients",
    "iter_routes",
    "parse_clients",
    "require_roles",
    "route_roles",
]

ROLES = ("admin", "clinician", "peer-hub", "public-health", "researcher")
ALGORITHM = "HS256"
TOKEN_PATH = "/token"

# Declares the bearer scheme in the OpenAPI description (Swagger UI's "Authorize" button).
bearer_scheme = OAuth2(
    flows=OAuthFlows(clientCredentials=OAuthFlowClientCredentials(tokenUrl=TOKEN_PATH)),
    scheme_name="hubToken",
    auto_error=False,
)


@dataclass(frozen=True)
class Client:
    """A client allowed to obtain tokens: its id, secret and the roles its tokens carry."""

    client_id: str
    secret: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class Principal:
    """The caller of one request, as its token says."""

    subject: str
    roles: tuple[str, ...]

    @property
    def role(self) -> str:
        return ",".join(self.roles)


def _signing_key(secret: str, hub: str) -> bytes:
    # A derived 32-byte key: long enough for HS256 whatever the configured secret looks like.
    return hmac.new(secret.encode(), f"healthmesh-jwt|{hub}".encode(), hashlib.sha256).digest()


def default_clients(secret: str, hub: str) -> dict[str, Client]:
    """One client per role, its id the role name and its secret derived from the hub's secret."""
    clients = {}
    for role in ROLES:
        derived = hmac.new(secret.encode(), f"healthmesh-client|{hub}|{role}".encode(), hashlib.sha256)
        clients[role] = Client(role, derived.hexdigest()[:32], (role,))
    return clients


def parse_clients(text: str) -> dict[str, Client]:
    """Clients from JSON ``{"client_id": {"secret": "...", "roles": ["researcher"]}, ...}``."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"HEALTHMESH_API_CLIENTS is not valid JSON: {error}") from error
    if not isinstance(document, dict) or not document:
        raise ConfigError(
            'HEALTHMESH_API_CLIENTS must be a JSON object {"id": {"secret": ..., "roles": [...]}}'
        )
    clients = {}
    for client_id, entry in document.items():
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("secret"), str)
            or len(entry["secret"]) < 16
        ):
            raise ConfigError(f"client {client_id!r} needs a 'secret' of at least 16 characters")
        roles = entry.get("roles")
        if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
            raise ConfigError(
                f"client {client_id!r}: 'roles' must list some of {', '.join(ROLES)}; got {roles!r}"
            )
        clients[client_id] = Client(client_id, entry["secret"], tuple(roles))
    return clients


class TokenIssuer:
    """Issues and verifies the hub's tokens."""

    def __init__(self, secret: str, hub: str, clients: dict[str, Client], ttl_s: int = 3600) -> None:
        self.hub = hub
        self.key = _signing_key(secret, hub)
        self.clients = clients
        self.ttl_s = ttl_s

    def issue(self, subject: str, roles: tuple[str, ...] | list[str], ttl_s: int | None = None) -> str:
        unknown = [r for r in roles if r not in ROLES]
        if unknown or not roles:
            raise ConfigError(f"unknown role(s) {unknown or roles!r}; choose among {', '.join(ROLES)}")
        now = int(time.time())
        claims = {"sub": subject, "roles": list(roles), "iss": f"healthmesh:{self.hub}", "iat": now,
                  "exp": now + (ttl_s or self.ttl_s)}  # fmt: skip
        return jwt.encode(claims, self.key, algorithm=ALGORITHM)

    def authenticate(self, client_id: str, secret: str) -> Client | None:
        client = self.clients.get(client_id)
        if client is None or not hmac.compare_digest(client.secret.encode(), secret.encode()):
            return None
        return client

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; HTTP 401 otherwise."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self.key, algorithms=[ALGORITHM], issuer=f"healthmesh:{self.hub}",
                options={"require": ["exp", "sub", "iss"]},
            )  # fmt: skip
        except jwt.PyJWTError as error:
            raise _unauthorized(f"invalid token: {error}") from None
        roles = claims.get("roles")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise _unauthorized("invalid token: no roles claim")
        return Principal(str(claims["sub"]), tuple(roles))


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})


class RoleGuard:
    """A FastAPI dependency that admits a request whose token carries one of ``roles``."""

    def __init__(self, roles: tuple[str, ...]) -> None:
        unknown = [r for r in roles if r not in ROLES]
        if unknown or not roles:
            raise ValueError(f"unknown roles {unknown}; choose among {ROLES}")
        self.roles = frozenset(roles)

    async def __call__(
        self, request: Request, authorization: str | None = Security(bearer_scheme)
    ) -> Principal:
        # async: a token check is microseconds of CPU; a sync dependency would cost a worker-thread hop.
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            request.state.audit_denied = "anonymous"
            raise _unauthorized("missing bearer token; get one at POST /token")
        try:
            principal = request.app.state.hub.issuer.verify(token.strip())
        except HTTPException:
            request.state.audit_denied = "invalid-token"
            raise
        request.state.principal = principal
        if not self.roles.intersection(principal.roles):
            raise HTTPException(
                403, f"role {principal.role!r} may not use this route; it needs one of {sorted(self.roles)}"
            )
        return principal


def require_roles(*roles: str) -> RoleGuard:
    """The dependency guarding a route: ``Depends(require_roles("admin", "researcher"))``."""
    return RoleGuard(tuple(roles))


def iter_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """Every endpoint route, looking inside included routers (FastAPI keeps those as one entry)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from iter_routes(inner.routes)
        else:
            yield route


def route_roles(route: BaseRoute) -> frozenset[str] | None:
    """The roles a route admits (from its ``RoleGuard``), or None for an unguarded route."""
    dependant = getattr(route, "dependant", None)
    stack = list(dependant.dependencies) if dependant is not None else []
    while stack:
        dependency = stack.pop()
        if isinstance(dependency.call, RoleGuard):
            return dependency.call.roles
        stack.extend(dependency.dependencies)
    return None
