"""Unauthenticated routes: liveness (the benchmark's ceiling) and the OAuth2 token endpoint."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request

from healthmesh.api.deps import get_state
from healthmesh.api.json_route import JsonRoute

__all__ = ["router"]

router = APIRouter(tags=["system"], route_class=JsonRoute)


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: answers without touching data or needing a token."""
    return {"status": "ok"}


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return client_id, secret


@router.post("/token")
def token(
    request: Request,
    grant_type: Annotated[str, Form(pattern="^client_credentials$")],
    client_id: Annotated[str | None, Form(max_length=200)] = None,
    client_secret: Annotated[str | None, Form(max_length=500)] = None,
) -> dict[str, Any]:
    """OAuth2 client-credentials flow: a hub-signed bearer token carrying the client's roles.

    Credentials come as form fields or HTTP Basic authentication (RFC 6749, section 2.3.1).
    """
    state = get_state(request)
    credentials = _basic_credentials(request) or (client_id or "", client_secret or "")
    client = state.issuer.authenticate(*credentials)
    if client is None:
        raise HTTPException(401, "unknown client or wrong secret", headers={"WWW-Authenticate": "Basic"})
    return {
        "access_token": state.issuer.issue(client.client_id, client.roles),
        "token_type": "bearer",
        "expires_in": state.issuer.ttl_s,
        "roles": list(client.roles),
    }
