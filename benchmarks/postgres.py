"""The same hub on PostgreSQL beside DuckDB: ingest, re-ingest, one Bundle, quality, a cohort, task features.

    bash scripts/postgres.sh && python benchmarks/postgres.py [--patients 2000]

Generates one regional population, loads it into a DuckDB file (the baseline) and into a fresh
PostgreSQL database (the server from ``.pg/url`` or HEALTHMESH_TEST_POSTGRES_URL), then times each
step on both engines and prints seconds and the ratio PostgreSQL / DuckDB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from healthmesh.cdm import HubDatabase, create_hub
from healthmesh.cohorts import build_cohort, load_cohort
from healthmesh.ingest import ingest_bundle, ingest_paths
from healthmesh.ingest.synth import generate_population
from healthmesh.quality import run_quality
from healthmesh.risk.tasks import load_task
from healthmesh.risk.train import task_data

REPO = Path(__file__).resolve().parents[1]
SECRET = b"benchmark-secret-0123456789abcdef0123"
HUB = "gyeonggi"


def _server() -> str:
    url = os.environ.get("HEALTHMESH_TEST_POSTGRES_URL") or (REPO / ".pg" / "url").read_text().strip()
    return url.strip()


def _timed(step: Callable[[], Any]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def _bundle(ndjson: Path) -> str:
    patient = json.loads(sorted(ndjson.glob("Patient*.ndjson"))[0].open().readline())
    reference = f'"Patient/{patient["id"]}"'
    entries = [patient]
    for path in sorted(ndjson.glob("*.ndjson")):
        if not path.name.startswith("Patient"):
            entries += [json.loads(line) for line in path.open() if reference in line]
    # Another person with records of their own: a new patient joins the hub, as a clinic's post would.
    text = json.dumps(
        {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": r} for r in entries]}
    )
    for resource in entries:
        rid = resource["id"]
        text = text.replace(f'"{rid}"', f'"{rid}-new"').replace(f'/{rid}"', f'/{rid}-new"')
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=2000)
    args = parser.parse_args()
    server = _server()
    admin = psycopg.connect(server, autocommit=True)
    name = f"hm_bench_{os.getpid()}"
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.execute(f"CREATE DATABASE {name}")
    folder = Path(tempfile.mkdtemp(prefix="hm-bench-pg-"))
    try:
        ndjson = folder / "ndjson"
        generate_population(HUB, args.patients, 1, ndjson)
        targets = {"duckdb": str(folder / "hub.duckdb"), "postgres": server.rsplit("/", 1)[0] + "/" + name}
        dbs: dict[str, HubDatabase] = {}
        times: dict[str, dict[str, float]] = {}
        bundle = _bundle(ndjson)
        task = load_task("t2dm-3y")
        cohort = load_cohort("type-2-diabetes")
        for engine, target in targets.items():
            t: dict[str, float] = {}
            t["create CDM + vocabulary"] = _timed(lambda: dbs.__setitem__(engine, create_hub(target)))  # noqa: B023
            db = dbs[engine]
            t["ingest"] = _timed(lambda: ingest_paths(db, [ndjson], HUB, SECRET))  # noqa: B023
            t["ingest again (no change)"] = _timed(lambda: ingest_paths(db, [ndjson], HUB, SECRET))  # noqa: B023
            t["one patient Bundle"] = _timed(lambda: ingest_bundle(db, bundle, HUB, SECRET))  # noqa: B023
            t["quality (all checks)"] = _timed(lambda: run_quality(db))  # noqa: B023
            t["cohort type-2-diabetes"] = _timed(lambda: build_cohort(db, cohort))  # noqa: B023
            t["task t2dm-3y features"] = _timed(lambda: task_data(db, task))  # noqa: B023
            times[engine] = t
        counts = {engine: db.table_counts() for engine, db in dbs.items()}
        differ = {
            t: (n, counts["postgres"].get(t))
            for t, n in counts["duckdb"].items()
            if counts["postgres"].get(t) != n
        }
        assert not differ, f"the engines hold different rows (DuckDB, PostgreSQL): {differ}"
        print(
            f"{args.patients:,} patients, {sum(counts['duckdb'][t] for t in ('measurement', 'observation', 'condition_occurrence', 'drug_exposure', 'visit_occurrence')):,} clinical rows; same table counts on both engines"
        )
        print(f"{'step':28} {'DuckDB s':>9} {'PostgreSQL s':>13} {'ratio':>7}")
        for step in times["duckdb"]:
            d, p = times["duckdb"][step], times["postgres"][step]
            print(f"{step:28} {d:9.2f} {p:13.2f} {p / d:7.2f}")
        for db in dbs.values():
            db.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


if __name__ == "__main__":
    main()
