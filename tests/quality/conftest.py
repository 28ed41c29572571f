"""Fixtures: a clean sample CDM (built once, copied per test) and the shared Synthea CDM."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from healthmesh.cdm import HubDatabase, connect, create_hub
from healthmesh.quality import insert_sample_population, load_cdm_csv


@pytest.fixture(scope="session")
def clean_cdm_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One file per test session, shared by the quality, characterize and privacy tests.
    path = tmp_path_factory.getbasetemp() / "hm-sample-30.duckdb"
    if not path.exists():
        with create_hub(str(path)) as db:
            insert_sample_population(db, persons=30)
    return path


@pytest.fixture
def clean_cdm(clean_cdm_file: Path, tmp_path: Path):
    target = tmp_path / "hub.duckdb"
    shutil.copy(clean_cdm_file, target)
    db: HubDatabase = connect(target)
    yield db
    db.close()


@pytest.fixture(scope="session")
def eunomia_file(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.getbasetemp() / "hm-eunomia.duckdb"
    if not path.exists():
        with create_hub(str(path)) as db:
            load_cdm_csv(db, shared_data / "omop" / "eunomia-synthea27nj-cdm54")
    return path
