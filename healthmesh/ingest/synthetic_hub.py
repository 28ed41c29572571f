"""Build a hub database from a generated regional population (demo, tests and benchmarks)."""

from __future__ import annotations

import shutil
from pathlib import Path

from healthmesh.cdm import create_hub
from healthmesh.ingest.load import ingest_paths, report_path_for
from healthmesh.ingest.report import IngestReport
from healthmesh.ingest.synth import generate_population

__all__ = ["build_synthetic_hub"]


def build_synthetic_hub(
    db_path: Path, hub: str, patients: int, seed: int, secret_key: bytes, keep_ndjson: bool = False
) -> IngestReport:
    """Generate ``patients`` people of ``hub``'s region and ingest them into a new CDM at ``db_path``."""
    for stale in (db_path, db_path.with_name(db_path.name + ".wal")):
        stale.unlink(missing_ok=True)
    ndjson_dir = db_path.parent / f"{db_path.stem}-ndjson"
    shutil.rmtree(ndjson_dir, ignore_errors=True)
    generate_population(hub, patients, seed, ndjson_dir)
    with create_hub(str(db_path)) as db:
        report = ingest_paths(db, [ndjson_dir], hub, secret_key)
    report.write(report_path_for(db_path))
    if not keep_ndjson:
        shutil.rmtree(ndjson_dir, ignore_errors=True)
    return report
