"""Fixtures of the risk tests: two generated hubs in real DuckDB files, and models trained on one."""

from __future__ import annotations

from pathlib import Path

import pytest

from healthmesh.cdm import HubDatabase, create_hub
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
