from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

SECRET = "1d6f9b3e8a2c5f0d7b4e9a1c6f3b8d2e5a0c7f4b"


def _run_cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEALTHMESH_SECRET_KEY": SECRET, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "healthmesh", *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.fixture(scope="session")
def run_cli():
    """Run ``python -m healthmesh ARGS...`` with the test hub key; returns the CompletedProcess."""
    return _run_cli


@pytest.fixture(scope="session")
def synthea_bundles(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 205 shared Synthea FHIR R4 bundles (plus hospital and practitioner bundles), unpacked."""
    target = tmp_path_factory.mktemp("synthea-fhir")
    with tarfile.open(shared_data / "synthea" / "synthea-fhir-r4-205-patients_smart-on-fhir.tar.gz") as tar:
        tar.extractall(target, filter="data")
    return target / "synthea-fhir-r4-bundles"


@pytest.fixture(scope="session")
def synthea_csv(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("synthea-csv")
    with tarfile.open(
        shared_data / "synthea" / "synthea-csv-v3.0.0-27-patients_OHDSI-dbt-synthea.tar.gz"
    ) as tar:
        tar.extractall(target, filter="data")
    return next(p for p in target.iterdir() if p.is_dir())


@pytest.fixture(scope="session")
def synthea_hub(synthea_bundles: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The shared bundles loaded once through the CLI: (database path, ingest report)."""
    import json

    db = tmp_path_factory.mktemp("synthea-hub") / "hub.duckdb"
    result = _run_cli("ingest", str(synthea_bundles), "--db", str(db), "--hub", "massachusetts", "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads(db.with_name(db.name + ".ingest-report.json").read_text())
    return db, report
