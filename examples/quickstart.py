"""Quick start: generate a small regional population, load it into a hub CDM, check it, count a cohort.

python examples/quickstart.py [WORKDIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from healthmesh.cdm import connect
from healthmesh.ingest import build_synthetic_hub
from healthmesh.quality import run_quality


def main(workdir: Path) -> None:
    db_path = workdir / "busan.duckdb"
    report = build_synthetic_hub(
        db_path, "busan", patients=300, seed=7, secret_key=b"example-key-0123456789abcdef"
    )
    print(f"loaded {report.loaded:,} of {report.records:,} records, {report.rejected} rejected")
    with connect(db_path, read_only=True) as db:
        quality = run_quality(db)
        persons_with_t2dm = db.scalar(
            "SELECT count(DISTINCT person_id) FROM condition_occurrence WHERE condition_concept_id = 201826"
        )
    summary = quality.summary()
    print(f"quality: {summary['checks_passed']:,} of {summary['checks_run']:,} checks passed")
    print(f"persons with type 2 diabetes: {persons_with_t2dm}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
