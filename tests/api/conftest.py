"""Fixtures of the hub-service tests: a copy of a generated hub, a model trained on it, patient Bundles."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from healthmesh.api import HubConfig, create_app, default_clients
from healthmesh.hubkeys import HubKeys
from healthmesh.privacy.release import Release

REPO = Path(__file__).resolve().parents[2]
HUB = "gyeonggi"
SECRET = "b7e1c94a0f3d5a2e8c6b1f4d7a9e2c5b8f0a3d6e"
KEYS = HubKeys(SECRET.encode())


@pytest.fixture(scope="session")
def api_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A t2dm-3y model (L1 logistic regression) trained on the risk package's toy CDM (known signal)."""
    from healthmesh.cdm import create_hub
    from healthmesh.risk import train_task
    from healthmesh.risk.toycdm import populate_toy_cdm

    folder = tmp_path_factory.mktemp("api-model")
    with create_hub(str(folder / "toy.duckdb")) as db:
        populate_toy_cdm(db, 2000, seed=11)
        release = Release(KEYS.release, 5)
        train_task(db, "t2dm-3y", folder / "t2dm", hub=HUB, models=["logistic-l1"], release=release)
    return folder / "t2dm"


@pytest.fixture(scope="session")
def patient_bundles(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Single-patient FHIR Bundles cut from a small population of the platform's generator."""
    from healthmesh.ingest.synth import generate_population

    sys.path.insert(0, str(REPO))
    from tests.risk.bundles import patient_bundle

    folder = tmp_path_factory.mktemp("bundles")
    generate_population(HUB, 12, 41, folder)
    return [patient_bundle(folder, i)[1] for i in range(4)]


def make_config(db_path: Path, model: Path | None) -> HubConfig:
    return HubConfig(
        hub=HUB, db_path=db_path, keys=KEYS, clients=default_clients(KEYS, HUB),
        models={"t2dm": model} if model else {}, scorer_pool=1,
    )  # fmt: skip


@pytest.fixture
def hub_copy(generated_hub: Path, tmp_path: Path) -> Path:
    """A private copy of the generated hub that a test may change."""
    target = tmp_path / "hub.duckdb"
    shutil.copyfile(generated_hub, target)
    return target


@pytest.fixture
def client(hub_copy: Path, api_model: Path) -> Iterator[TestClient]:
    """A test client of a hub service over a private copy of the generated hub, with the t2dm model."""
    with TestClient(create_app(make_config(hub_copy, api_model))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def shared_client(
    generated_hub: Path, api_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """One service for read-mostly tests of a module (its caches stay warm between tests)."""
    target = tmp_path_factory.mktemp("shared-hub") / "hub.duckdb"
    shutil.copyfile(generated_hub, target)
    with TestClient(create_app(make_config(target, api_model))) as test_client:
        yield test_client


def token_for(client: TestClient, role: str) -> str:
    """A token from the service's own token endpoint (client-credentials flow)."""
    secret = client.app.state.hub.config.clients[role].secret  # type: ignore[attr-defined]
    answer = client.post(
        "/token", data={"grant_type": "client_credentials", "client_id": role, "client_secret": secret}
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


@pytest.fixture
def auth(client: TestClient) -> Callable[[str], dict[str, str]]:
    return lambda role: {"Authorization": f"Bearer {token_for(client, role)}"}


@pytest.fixture(scope="session")
def get_token() -> Callable[[TestClient, str], str]:
    return token_for


@pytest.fixture(scope="session")
def make_hub_config() -> Callable[[Path, Path | None], HubConfig]:
    return make_config
