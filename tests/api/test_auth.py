"""Tokens: the client-credentials flow, expiry and foreign signatures, and the secret rules."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from healthmesh.api import TokenIssuer, config_from_settings, default_clients
from healthmesh.config import Settings
from healthmesh.errors import ConfigError


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
    own = TokenIssuer(config.secret, config.hub, config.clients)
    expired = own.issue("admin", ("admin",), ttl_s=-10)
    other_hub = TokenIssuer(config.secret, "busan", config.clients).issue("admin", ("admin",))
    other_secret = TokenIssuer("another-secret-0123456789abcdef", config.hub, config.clients).issue(
        "admin", ("admin",)
    )
    for token in (expired, other_hub, other_secret):
        answer = client.get("/audit", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
    assert (
        client.get("/audit", headers={"Authorization": f"Bearer {own.issue('ops', ('admin',))}"}).status_code
        == 200
    )


def test_a_placeholder_secret_is_refused_outside_development(tmp_path: Path) -> None:
    production = Settings(environment="production", secret_key=SecretStr("changeme"))
    with pytest.raises(ConfigError, match="placeholder"):
        config_from_settings("busan", tmp_path / "hub.duckdb", settings=production)
    with pytest.raises(ConfigError, match="not set"):
        config_from_settings("busan", tmp_path / "hub.duckdb", settings=Settings(environment="production"))
    good = Settings(environment="production", secret_key=SecretStr("x" * 40))
    config = config_from_settings("busan", tmp_path / "hub.duckdb", settings=good)
    assert config.secret == "x" * 40
    assert config.clients == default_clients("x" * 40, "busan")


def test_clients_come_from_configuration(tmp_path: Path) -> None:
    settings = Settings(
        secret_key=SecretStr("y" * 40),
        api_clients=SecretStr(
            '{"lab-7": {"secret": "0123456789abcdef0123", "roles": ["researcher", "peer-hub"]}}'
        ),
    )
    config = config_from_settings("busan", tmp_path / "hub.duckdb", settings=settings)
    assert list(config.clients) == ["lab-7"]
    assert config.clients["lab-7"].roles == ("researcher", "peer-hub")
    bad = Settings(
        secret_key=SecretStr("y" * 40),
        api_clients=SecretStr('{"x": {"secret": "short", "roles": ["admin"]}}'),
    )
    with pytest.raises(ConfigError, match="at least 16 characters"):
        config_from_settings("busan", tmp_path / "hub.duckdb", settings=bad)
