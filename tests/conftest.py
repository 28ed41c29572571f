"""Shared fixtures: temp hub databases and the ../shared/data folder."""

from __future__ import annotations

import os
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
