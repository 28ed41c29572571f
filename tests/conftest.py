"""Shared fixtures: temp hub databases and the ../shared/data folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HEALTHMESH_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared public data; tests that need it skip, saying why, when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} not found (set HEALTHMESH_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def hub_db(tmp_path: Path):
    """A fresh hub CDM with the bundled vocabulary, in a real DuckDB file."""
    from healthmesh.cdm import create_hub

    db = create_hub(str(tmp_path / "hub.duckdb"))
    yield db
    db.close()


GENERATED_PATIENTS = 1500
TEST_SECRET = b"healthmesh-test-secret-key-0123456789"


@pytest.fixture(scope="session")
def generated_hubs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Hub CDMs (DuckDB files) of generated populations: gyeonggi and busan, built once per session.

    Open them read-only (``connect(path, read_only=True)``) or copy them before changing them.
    """
    from healthmesh.ingest import build_synthetic_hub

    root = tmp_path_factory.mktemp("generated-hubs")
    hubs = {}
    for seed, hub in enumerate(("gyeonggi", "busan"), start=1):
        path = root / f"{hub}.duckdb"
        build_synthetic_hub(path, hub, GENERATED_PATIENTS, seed, TEST_SECRET)
        hubs[hub] = path
    return hubs


@pytest.fixture(scope="session")
def generated_hub(generated_hubs: dict[str, Path]) -> Path:
    """One generated hub CDM (gyeonggi, 1,500 people); open read-only or copy before changing it."""
    return generated_hubs["gyeonggi"]


@pytest.fixture(scope="session")
def clean_cdm_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small consistent CDM (30 sample persons), built once per session; use ``clean_cdm`` for a copy."""
    from healthmesh.cdm import create_hub
    from healthmesh.quality import insert_sample_population

    path = tmp_path_factory.getbasetemp() / "hm-sample-30.duckdb"
    if not path.exists():
        with create_hub(str(path)) as db:
            insert_sample_population(db, persons=30)
    return path


@pytest.fixture
def clean_cdm(clean_cdm_file: Path, tmp_path: Path):
    """A fresh copy of the sample CDM, open read-write."""
    from healthmesh.cdm import connect

    target = tmp_path / "hub.duckdb"
    shutil.copy(clean_cdm_file, target)
    db = connect(target)
    yield db
    db.close()


@pytest.fixture(scope="session")
def eunomia_file(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared OMOP CDM v5.4 CSVs (Eunomia Synthea27Nj) loaded into a hub database, once per session."""
    from healthmesh.cdm import create_hub
    from healthmesh.quality import load_cdm_csv

    path = tmp_path_factory.getbasetemp() / "hm-eunomia.duckdb"
    if not path.exists():
        with create_hub(str(path)) as db:
            load_cdm_csv(db, shared_data / "omop" / "eunomia-synthea27nj-cdm54")
    return path
