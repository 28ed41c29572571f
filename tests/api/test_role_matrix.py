"""Every route of the hub service is either on the public allow-list or guarded by roles that hold."""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi.testclient import TestClient

from healthmesh.api import PUBLIC_PATHS, ROLES, iter_routes, route_roles

EXPECTED_PUBLIC = {"/health", "/token", "/openapi.json", "/docs", "/docs/oauth2-redirect"}


def _endpoints(client: TestClient) -> list[tuple[str, str, frozenset[str] | None]]:
    found = []
    for route in iter_routes(client.app.routes):  # type: ignore[attr-defined]
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                found.append((method, route.path, route_roles(route)))  # type: ignore[attr-defined]
    return found


def _call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> int:
    url = re.sub(r"\{[^}]+\}", "t2dm", path)
    body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    return client.request(method, url, headers=headers, **body).status_code


def test_public_allow_list_is_exactly_the_unauthenticated_routes(shared_client: TestClient) -> None:
    assert PUBLIC_PATHS == EXPECTED_PUBLIC
    endpoints = _endpoints(shared_client)
    assert len(endpoints) >= 15
    for method, path, roles in endpoints:
        if path in PUBLIC_PATHS:
            assert roles is None, f"{method} {path} is public but declares roles"
        else:
            assert roles, f"{method} {path} is neither on the public allow-list nor guarded by require_roles"


def test_every_guarded_route_answers_401_without_token_and_403_to_other_roles(
    shared_client: TestClient, get_token: Callable[[TestClient, str], str]
) -> None:
    tokens = {role: get_token(shared_client, role) for role in ROLES}
    checked = 0
    for method, path, roles in _endpoints(shared_client):
        if roles is None:
            continue
        assert _call(shared_client, method, path, {}) == 401, f"{method} {path} without a token"
        bad = {"Authorization": "Bearer not-a-jwt"}
        assert _call(shared_client, method, path, bad) == 401, f"{method} {path} with a malformed token"
        for role in sorted(set(ROLES) - roles):
            status = _call(shared_client, method, path, {"Authorization": f"Bearer {tokens[role]}"})
            assert status == 403, f"{method} {path} let role {role} through ({status})"
            checked += 1
    assert checked >= 20


def test_admitted_role_gets_past_the_guard(
    shared_client: TestClient, get_token: Callable[[TestClient, str], str]
) -> None:
    researcher = {"Authorization": f"Bearer {get_token(shared_client, 'researcher')}"}
    assert shared_client.get("/cohorts", headers=researcher).status_code == 200
    admin = {"Authorization": f"Bearer {get_token(shared_client, 'admin')}"}
    assert shared_client.get("/audit", headers=admin).status_code == 200


def test_public_routes_answer_without_token(shared_client: TestClient) -> None:
    assert shared_client.get("/health").json() == {"status": "ok"}
    schema = shared_client.get("/openapi.json").json()
    assert "hubToken" in schema["components"]["securitySchemes"]
    assert "/risk/{model}/score" in schema["paths"]
