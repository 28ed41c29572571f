"""Ingest into a hub whose CDM is in PostgreSQL, with the one mapping.

Inputs are staged and mapped exactly as for DuckDB, in a scratch DuckDB that first receives the
hub's vocabulary lookup, its identifier index and the keys of its reference tables (persons,
visits, providers, care sites, locations, deaths), so that records can point at what earlier
loads stored. The rows the
load wrote are then upserted into PostgreSQL by primary key (DELETE + COPY) and the derived tables
(observation_period, death dates, cdm_source) are rebuilt there, all in one PostgreSQL transaction
per load: a load killed half-way leaves the hub as it was, and running it again gives the database
a clean run gives (keys are keyed hashes).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from healthmesh.cdm.database import HubDatabase, connect, init_cdm
from healthmesh.cdm.postgres import (
    PostgresHubDatabase,
    copy_duckdb_to_postgres,
    copy_postgres_to_duckdb,
    redact_url,
)
from healthmesh.cdm.schema import cdm_tables, sql_type
from healthmesh.cdm.vocabulary import vocabulary_version
from healthmesh.errors import CDMError
from healthmesh.ingest import load
from healthmesh.ingest.map import EVENT_TABLES, rebuild_derived
from healthmesh.ingest.report import IngestReport

__all__ = ["build_synthetic_hub_postgres", "ingest_bundle_postgres", "ingest_paths_postgres"]

# Tables the mapping reads back (joins, "is the Patient in the hub") and upserts by key.
REFERENCE_TABLES = {
    "location": "location_id",
    "care_site": "care_site_id",
    "provider": "provider_id",
    "person": "person_id",
    "death": "person_id",
    "visit_occurrence": "visit_occurrence_id",
}
_IDENTIFIER_INDEX = "hm_identifier_index"
_IDENTIFIER_COLUMNS = {"resource_type": "VARCHAR", "identifier_hash": "VARCHAR", "rid": "VARCHAR"}
_MAP_COLUMNS = {
    "vocabulary_id": "VARCHAR",
    "concept_code": "VARCHAR",
    "source_concept_id": "BIGINT",
    "concept_id": "BIGINT",
    "domain_id": "VARCHAR",
}
# One load at a time per hub database: two concurrent upserts of the same person must not interleave.
_LOCK_KEY = 0x6865616C74686D


def _types(table: str) -> dict[str, str]:
    return {f.name: sql_type(f.datatype) for f in cdm_tables()[table]}


def _pull(pg: PostgresHubDatabase, scratch: HubDatabase, table: str, types: dict[str, str]) -> None:
    columns = ", ".join(f'"{c}"' for c in types)
    copy_postgres_to_duckdb(pg, f"SELECT {columns} FROM {table}", scratch.con, table, types)


def _scratch_for(pg: PostgresHubDatabase) -> HubDatabase:
    """An in-memory DuckDB CDM holding what the mapping reads of the hub.

    Reference tables receive only the hub's keys, marked ``hm_pulled``: the mapping reads nothing
    else of them, and the rows it writes (``NOT hm_pulled``) are exactly the ones to upsert.
    """
    scratch = connect(":memory:")
    init_cdm(scratch)
    for table in ("concept", "vocabulary"):
        _pull(pg, scratch, table, _types(table))
    scratch.execute(
        "CREATE TABLE hm_concept_map (" + ", ".join(f"{c} {t}" for c, t in _MAP_COLUMNS.items()) + ")"
    )
    _pull(pg, scratch, "hm_concept_map", _MAP_COLUMNS)
    scratch.execute(
        f"CREATE TABLE {_IDENTIFIER_INDEX} ("
        + ", ".join(f"{c} {t}" for c, t in _IDENTIFIER_COLUMNS.items())
        + ")"
    )
    pg.execute(
        f"CREATE TABLE IF NOT EXISTS {_IDENTIFIER_INDEX} (resource_type TEXT, identifier_hash TEXT, rid TEXT)"
    )
    _pull(pg, scratch, _IDENTIFIER_INDEX, _IDENTIFIER_COLUMNS)
    scratch.execute(f"CREATE TEMP TABLE hm_snap_{_IDENTIFIER_INDEX} AS SELECT * FROM {_IDENTIFIER_INDEX}")
    for table, key in REFERENCE_TABLES.items():
        for field in cdm_tables()[table]:
            if field.required and field.name != key:  # pulled rows carry their key only
                scratch.execute(f'ALTER TABLE {table} ALTER COLUMN "{field.name}" DROP NOT NULL')
        scratch.execute(f"ALTER TABLE {table} ADD COLUMN hm_pulled BOOLEAN DEFAULT false")
        scratch.execute("CREATE OR REPLACE TEMP TABLE hm_pull_keys (k BIGINT)")
        copy_postgres_to_duckdb(
            pg, f"SELECT DISTINCT {key} FROM {table}", scratch.con, "hm_pull_keys", {"k": "BIGINT"}
        )
        scratch.execute(f"INSERT INTO {table} ({key}, hm_pulled) SELECT k, true FROM hm_pull_keys")
    return scratch


def _push_rows(scratch: HubDatabase, pg: PostgresHubDatabase, table: str, key: str) -> None:
    """Rows of ``table`` that the load wrote: delete their keys in PostgreSQL, copy them in."""
    if not scratch.scalar(f"SELECT count(*) FROM {table} WHERE NOT hm_pulled"):
        return
    columns = [f.name for f in cdm_tables()[table]]
    _delete_keys(scratch, pg, table, key, f"SELECT DISTINCT {key} FROM {table} WHERE NOT hm_pulled")
    quoted = ", ".join(f'"{c}"' for c in columns)
    copy_duckdb_to_postgres(
        scratch.con, f"SELECT {quoted} FROM {table} WHERE NOT hm_pulled", pg, table, columns
    )


def _push_new_identifiers(scratch: HubDatabase, pg: PostgresHubDatabase) -> None:
    columns = list(_IDENTIFIER_COLUMNS)
    copy_duckdb_to_postgres(
        scratch.con,
        f"SELECT {', '.join(columns)} FROM {_IDENTIFIER_INDEX} EXCEPT SELECT {', '.join(columns)} FROM hm_snap_{_IDENTIFIER_INDEX}",
        pg,
        _IDENTIFIER_INDEX,
        columns,
    )


def _delete_keys(scratch: HubDatabase, pg: PostgresHubDatabase, table: str, key: str, keys_sql: str) -> None:
    pg.execute("CREATE TEMP TABLE IF NOT EXISTS hm_keys (k BIGINT)")
    pg.execute("TRUNCATE hm_keys")
    copy_duckdb_to_postgres(scratch.con, keys_sql, pg, "hm_keys", ["k"])
    pg.execute(f"DELETE FROM {table} USING hm_keys WHERE {table}.{key} = hm_keys.k")


def _push(scratch: HubDatabase, pg: PostgresHubDatabase, hub: str, bundle: bool = False) -> None:
    """Upsert the load's rows and rebuild the derived tables, in one PostgreSQL transaction.

    For a Bundle the derived tables are rebuilt for its persons only, as on DuckDB: the mapping's
    ``hm_checked`` (persons and status) is copied over so that the same SQL finds them.
    """
    pg.execute("BEGIN")
    try:
        pg.execute(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
        for table, key in REFERENCE_TABLES.items():
            _push_rows(scratch, pg, table, key)
        _push_new_identifiers(scratch, pg)
        # A record re-sent may change domain (measurement -> observation): its id leaves every event table.
        ids = " UNION ".join(f"SELECT {key} FROM {table}" for table, (key, _) in EVENT_TABLES.items())
        for table, (key, _) in EVENT_TABLES.items():
            _delete_keys(scratch, pg, table, key, ids)
        for table in EVENT_TABLES:
            if scratch.scalar(f"SELECT count(*) FROM {table}"):
                columns = [f.name for f in cdm_tables()[table]]
                quoted = ", ".join(f'"{c}"' for c in columns)
                copy_duckdb_to_postgres(scratch.con, f"SELECT {quoted} FROM {table}", pg, table, columns)
        if bundle:
            pg.execute("DROP TABLE IF EXISTS hm_checked")
            pg.execute("CREATE TEMP TABLE hm_checked (person_id BIGINT, status TEXT)")
            copy_duckdb_to_postgres(
                scratch.con,
                "SELECT DISTINCT person_id, status FROM hm_checked WHERE person_id IS NOT NULL",
                pg,
                "hm_checked",
                ["person_id", "status"],
            )
        rebuild_derived(pg, hub, vocabulary_version(pg), only_batch_persons=bundle)
        pg.execute("COMMIT")
    except BaseException:
        if not pg.raw.closed:
            pg.raw.execute("ROLLBACK")
        raise
    if bundle:  # a Bundle barely moves the statistics
        return
    # Fresh statistics: after a bulk COPY the planner would otherwise guess (autovacuum comes later).
    tables = [*REFERENCE_TABLES, *EVENT_TABLES, "observation_period"]
    pg.execute(f"ANALYZE {', '.join(tables)}")


def _finish(pg: PostgresHubDatabase, report: IngestReport, started: float) -> IngestReport:
    report.database = redact_url(pg.url)
    report.tables = pg.table_counts(list(cdm_tables()))
    report.seconds = time.perf_counter() - started
    return report


def ingest_paths_postgres(
    db: PostgresHubDatabase,
    paths: list[Path],
    hub: str,
    secret_key: bytes,
    strict: bool = False,
    progress: load.Progress | None = None,
) -> IngestReport:
    """``ingest_paths`` for a PostgreSQL hub: map in a scratch DuckDB, then one upsert transaction.

    Unlike the DuckDB path, batches are not committed one by one: the whole load lands at once.
    """
    started = time.perf_counter()
    with _scratch_for(db) as scratch:
        report = load.ingest_paths(scratch, paths, hub, secret_key, strict=strict, progress=progress)
        if report.committed:
            _push(scratch, db, hub)
    return _finish(db, report, started)


def ingest_bundle_postgres(
    db: PostgresHubDatabase, bundle: str | bytes, hub: str, secret_key: bytes
) -> IngestReport:
    """``ingest_bundle`` for a PostgreSQL hub: all of the Bundle, or (if anything is rejected) nothing."""
    started = time.perf_counter()
    with _scratch_for(db) as scratch:
        report = load.ingest_bundle(scratch, bundle, hub, secret_key)
        if report.committed:
            _push(scratch, db, hub, bundle=True)
    return _finish(db, report, started)


def build_synthetic_hub_postgres(
    url: str, hub: str, patients: int, seed: int, secret_key: bytes
) -> IngestReport:
    """``build_synthetic_hub`` for a PostgreSQL hub: generate ``patients`` people of ``hub`` and ingest them."""
    from healthmesh.cdm import create_hub
    from healthmesh.ingest.synth import generate_population

    folder = Path(tempfile.mkdtemp(prefix=f"hm-{hub}-ndjson-"))
    try:
        generate_population(hub, patients, seed, folder)
        with create_hub(url) as db:
            if not isinstance(db, PostgresHubDatabase):
                raise CDMError(
                    f"{url!r} is not a postgresql:// URL; use build_synthetic_hub for a DuckDB file"
                )
            return ingest_paths_postgres(db, [folder], hub, secret_key)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
