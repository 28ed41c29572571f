"""Tokens: the client-credentials flow, expiry and foreign signatures, and the secret rules."""

from __future__ import annotations

import base64
from pathlib import Path

import jwt
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from healthmesh.api import TokenIssuer, config_from_settings, default_clients
from healthmesh.config import Settings
from healthmesh.errors import ConfigError
from healthmesh.hubkeys import HubKeys


def test_token_endpoint_issues_role_tokens_and_refuses_wrong_secrets(client: TestClient) -> None:
    clients = client.app.state.hub.config.clients  # type: ignore[attr-defined]
    form = {
        "grant_type": "client_credentials",
        "client_id": "clinician",
        "client_secret": clients["clinician"].secret,
    }
    answer = client.post("/token", data=form)
    assert answer.status_code == 200
    assert answer.json()["roles"] == ["clinician"] and answer.json()["token_type"] == "bearer"
    wrong = client.post("/token", data=form | {"client_secret": "guess"})
    assert wrong.status_code == 401
    basic = base64.b64encode(f"researcher:{clients['researcher'].secret}".encode()).decode()
    via_basic = client.post(
        "/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert via_basic.status_code == 200 and via_basic.json()["roles"] == ["researcher"]
    assert client.post("/token", data=form | {"grant_type": "password"}).status_code == 422


def test_expired_and_foreign_tokens_are_refused(client: TestClient) -> None:
    config = client.app.state.hub.config  # type: ignore[attr-defined]
    own = client.app.state.hub.issuer  # type: ignore[attr-defined]
    expired = jwt.encode(
        {
            "sub": "admin",
            "roles": ["admin"],
            "iss": f"healthmesh:{config.hub}",
            "iat": 0,
            "exp": 10,
            "jti": "j",
        },
        own.signing_key(1),
        algorithm="HS256",
        headers={"kid": "1"},
    )
    other_hub = TokenIssuer(config.keys, "busan", config.clients).issue("admin", ("admin",))
    other_keys = HubKeys(b"5e0b8d3a6f1c9e4b7d2a5f8c0e3b6d9a1f4c7e2b")
    other_secret = TokenIssuer(other_keys, config.hub, config.clients).issue("admin", ("admin",))
    for token in (expired, other_hub, other_secret):
        answer = client.get("/audit", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
    assert (
        client.get("/audit", headers={"Authorization": f"Bearer {own.issue('ops', ('admin',))}"}).status_code
        == 200
    )


def test_a_weak_secret_is_refused_outside_development(tmp_path: Path) -> None:
    for weak in ("changeme", "x", "busan2024", "x" * 40):
        production = Settings(environment="production", secret_key=SecretStr(weak))
        with pytest.raises(ConfigError, match="HEALTHMESH_SECRET_KEY"):
            config_from_settings("busan", tmp_path / "hub.duckdb", settings=production)
    assert Settings().environment == "production"
    strong = "c2f7a9e4b1d8c5a3f0e7b2d9a6c1f4e8b3d0a5c7"
    good = Settings(environment="production", secret_key=SecretStr(strong))
    config = config_from_settings("busan", tmp_path / "hub.duckdb", settings=good)
    assert config.keys == HubKeys(strong.encode())
    assert config.clients == default_clients(HubKeys(strong.encode()), "busan")


def test_clients_come_from_configuration(tmp_path: Path) -> None:
    settings = Settings(
        secret_key=SecretStr("d4a8f2c6e0b5d9a3f7c1e6b0d4a8f3c7e1b5d9a2"),
        api_clients=SecretStr(
            '{"lab-7": {"secret": "0123456789abcdef0123", "roles": ["researcher", "peer-hub"]}}'
        ),
    )
    config = config_from_settings("busan", tmp_path / "hub.duckdb", settings=settings)
    assert list(config.clients) == ["lab-7"]
    assert config.clients["lab-7"].roles == ("researcher", "peer-hub")
    bad = Settings(
        secret_key=SecretStr("d4a8f2c6e0b5d9a3f7c1e6b0d4a8f3c7e1b5d9a2"),
        api_clients=SecretStr('{"x": {"secret": "short", "roles": ["admin"]}}'),
    )
    with pytest.raises(ConfigError, match="at least 16 characters"):
        config_from_settings("busan", tmp_path / "hub.duckdb", settings=bad)
