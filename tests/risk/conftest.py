"""Fixtures of the risk tests: two generated hubs in real DuckDB files, and models trained on one."""

from __future__ import annotations

from pathlib import Path

import pytest

from healthmesh.cdm import HubDatabase, create_hub
from healthmesh.hubkeys import HubKeys
from healthmesh.privacy.release import Release
from healthmesh.risk.toycdm import populate_toy_cdm


def _hub(folder: Path, name: str, persons: int, seed: int) -> Path:
    path = folder / f"{name}.duckdb"
    db: HubDatabase = create_hub(str(path))
    populate_toy_cdm(db, persons, seed=seed)
    db.execute(
        "INSERT INTO cdm_source (cdm_source_name, cdm_source_abbreviation, cdm_holder, source_release_date, "
        "cdm_release_date, cdm_version_concept_id, vocabulary_version) VALUES (?, ?, 'test', DATE '2025-01-01', "
        "DATE '2025-01-01', 756265, 'test')",
        [name, name],
    )
    db.close()
    return path


@pytest.fixture(scope="session")
def toy_hubs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two hubs (``gyeonggi`` to train, ``busan`` to validate) whose risk factors drive onset."""
    folder = tmp_path_factory.mktemp("hubs")
    return {
        "gyeonggi": _hub(folder, "gyeonggi", 2000, seed=11),
        "busan": _hub(folder, "busan", 1500, seed=12),
    }


def hub_release(master: bytes = b"a test hub master secret of 32+ bytes", min_count: int = 5) -> Release:
    """A hub's release path, as the service builds it from its master secret."""
    return Release(HubKeys(master).release, min_count)
