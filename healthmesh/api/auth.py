"""Who may do what: hub-signed JWT bearer tokens, clients from configuration, role guards.

A token is an HS256 JWT signed with the hub's token key (``HubKeys.token_signing``: derived from
its master secret, and of no use for anything else). Clients obtain one with the OAuth2
client-credentials flow at ``POST /token``; each route declares the roles it admits with
``require_roles(...)``, and ``route_roles`` lets a test read that declaration back from the app.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import jwt
from fastapi import HTTPException, Request, Security
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import OAuth2
from starlette.routing import BaseRoute

from healthmesh.api.tokenstate import MAX_TOKEN_TTL_S, TokenState, TokenStatus, check_ttl
from healthmesh.errors import ConfigError
from healthmesh.hubkeys import HubKeys

__all__ = [
    "MAX_TOKEN_TTL_S",
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
# Tokens whose signature and claims were checked, remembered until they expire (a client sends the
# same token with every request). Only tokens that passed the full check get here: the size bound
# holds against a caller with many valid tokens, not against forgeries.
VERIFIED_CACHE_SIZE = 4096

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
class _Verified:
    """What a token's full check established, and what must still be checked at each use."""

    generation: int  # the key generation that signed it
    jti: str
    expires: int  # its exp claim
    principal: Principal


@dataclass(frozen=True)
class Principal:
    """The caller of one request, as its token says."""

    subject: str
    roles: tuple[str, ...]

    @property
    def role(self) -> str:
        return ",".join(self.roles)


def default_clients(keys: HubKeys, hub: str) -> dict[str, Client]:
    """One client per role, its id the role name and its secret derived from the hub's keys."""
    return {role: Client(role, keys.client_secret(hub, role), (role,)) for role in ROLES}


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
    """Issues and verifies the hub's tokens.

    A token's ``kid`` header is the generation of the key that signed it; only the hub's current
    generation is accepted, so ``healthmesh hub rotate-token-key`` ends every older token at once.
    Each token has a ``jti`` that ``healthmesh hub revoke`` can put on the hub's revocation list.
    """

    def __init__(
        self,
        keys: HubKeys,
        hub: str,
        clients: dict[str, Client],
        ttl_s: int = 3600,
        state: TokenState | None = None,
    ) -> None:
        self.hub = hub
        self.keys = keys
        self.clients = clients
        self.ttl_s = check_ttl(ttl_s)
        self.state = state if state is not None else TokenState(None)
        self._key_cache: tuple[int, bytes] | None = None
        self._verified: dict[str, _Verified] = {}

    def signing_key(self, generation: int) -> bytes:
        cached = self._key_cache
        if cached is None or cached[0] != generation:
            cached = (generation, self.keys.token_signing(self.hub, generation))
            self._key_cache = cached
        return cached[1]

    def issue(self, subject: str, roles: tuple[str, ...] | list[str], ttl_s: int | None = None) -> str:
        unknown = [r for r in roles if r not in ROLES]
        if unknown or not roles:
            raise ConfigError(f"unknown role(s) {unknown or roles!r}; choose among {', '.join(ROLES)}")
        ttl = check_ttl(ttl_s if ttl_s is not None else self.ttl_s)
        generation = self.state.current().generation
        now = int(time.time())
        claims = {"sub": subject, "roles": list(roles), "iss": f"healthmesh:{self.hub}", "iat": now,
                  "exp": now + ttl, "jti": secrets.token_urlsafe(16)}  # fmt: skip
        return jwt.encode(
            claims, self.signing_key(generation), algorithm=ALGORITHM, headers={"kid": str(generation)}
        )

    def authenticate(self, client_id: str, secret: str) -> Client | None:
        client = self.clients.get(client_id)
        if client is None or not hmac.compare_digest(client.secret.encode(), secret.encode()):
            return None
        return client

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; HTTP 401 otherwise.

        A token seen before skips the signature and claim checks (they cannot have changed: the
        token is the same string), not the ones that can change: the key generation (rotation),
        the revocation list and the expiry are checked at every use.
        """
        current = self.state.current()
        seen = self._verified.get(token)
        if (
            seen is not None
            and seen.generation == current.generation
            and seen.jti not in current.revoked
            and time.time() < seen.expires
        ):
            return seen.principal
        # Not seen, or no longer valid: the full check, which also gives the reason for a refusal.
        principal, claims = self._check(token, current)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = _Verified(
            current.generation, str(claims["jti"]), int(claims["exp"]), principal
        )
        return principal

    def _check(self, token: str, current: TokenStatus) -> tuple[Principal, dict[str, Any]]:
        """Signature, key generation, issuer, claims, revocation and lifetime of ``token``."""
        try:
            # Only the current generation's key is tried: a token of a retired key fails its signature.
            decoded = jwt.decode_complete(
                token, self.signing_key(current.generation), algorithms=[ALGORITHM],
                issuer=f"healthmesh:{self.hub}", options={"require": ["exp", "iat", "sub", "iss", "jti"]},
            )  # fmt: skip
        except jwt.InvalidSignatureError:
            raise _unauthorized("invalid token: not signed with this hub's current token key") from None
        except jwt.PyJWTError as error:
            raise _unauthorized(f"invalid token: {error}") from None
        if decoded["header"].get("kid") != str(current.generation):
            raise _unauthorized("invalid token: signed with a retired key; get a new token at POST /token")
        claims: dict[str, Any] = decoded["payload"]
        if str(claims["jti"]) in current.revoked:
            raise _unauthorized("invalid token: revoked")
        if int(claims["exp"]) - int(claims["iat"]) > MAX_TOKEN_TTL_S:
            raise _unauthorized("invalid token: lifetime over the hub's cap")
        roles = claims.get("roles")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise _unauthorized("invalid token: no roles claim")
        return Principal(str(claims["sub"]), tuple(roles)), claims


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
            # The request guard (healthmesh.api.limits) verified this request's token before its body was read.
            verified = getattr(request.state, "verified_principal", None)
            principal = verified or request.app.state.hub.issuer.verify(token.strip())
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
