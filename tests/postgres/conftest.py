"""Fixtures of the PostgreSQL tests: both backends, and one generated population ingested into each."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hm_backends import (  # noqa: E402
    PostgresServer,
    backend_db,
    database_url,
    duckdb_hub_template,
    postgres_server,
)

from healthmesh.cdm import HubDatabase, connect  # noqa: E402

__all__ = ["backend_db", "duckdb_hub_template", "postgres_server"]

PATIENTS = 300
SECRET = b"healthmesh-postgres-test-secret-0123456789"
HUB = "gyeonggi"


@dataclass
class GeneratedPair:
    """One generated population (NDJSON) ingested into a DuckDB file and into a PostgreSQL database."""

    ndjson: Path
    duckdb_path: Path
    postgres_url: str
    reports: dict[str, object]

    def open(self, backend: str) -> HubDatabase:
        return (
            connect(self.postgres_url) if backend == "postgres" else connect(self.duckdb_path, read_only=True)
        )


@pytest.fixture(scope="session")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bulk NDJSON of a small generated regional population."""
    from healthmesh.ingest.synth import generate_population

    folder = tmp_path_factory.mktemp("population") / "ndjson"
    generate_population(HUB, PATIENTS, 7, folder)
    return folder


@pytest.fixture(scope="session")
def generated_pair(
    population: Path,
    postgres_server: PostgresServer,
    duckdb_hub_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GeneratedPair]:
    """The population ingested into each engine (read it; copy before changing it)."""
    import shutil

    from healthmesh.ingest import ingest_paths

    path = tmp_path_factory.mktemp("pair") / "hub.duckdb"
    shutil.copyfile(duckdb_hub_template, path)
    reports = {}
    with connect(path) as db:
        reports["duckdb"] = ingest_paths(db, [population], HUB, SECRET)
    name = postgres_server.create(postgres_server.hub_template())
    url = database_url(postgres_server.url, name)
    with connect(url) as db:
        reports["postgres"] = ingest_paths(db, [population], HUB, SECRET)
    yield GeneratedPair(population, path, url, reports)
    postgres_server.drop(name)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def generated_db(request: pytest.FixtureRequest, generated_pair: GeneratedPair) -> Iterator[HubDatabase]:
    """The generated hub on each engine."""
    db = generated_pair.open(request.param)
    yield db
    db.close()
