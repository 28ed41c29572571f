"""The OMOP CDM v5.4 of a hub: DDL from the OHDSI spec, the database seam and the vocabulary."""

from __future__ import annotations

from healthmesh.cdm.database import HubDatabase, connect, init_cdm
from healthmesh.cdm.schema import CDM_VERSION, Field, cdm_fields, cdm_tables, create_table_sql, sql_type
from healthmesh.cdm.vocabulary import bundled_vocabulary_dir, load_vocabulary, vocabulary_version

__all__ = [
    "CDM_VERSION",
    "Field",
    "HubDatabase",
    "bundled_vocabulary_dir",
    "cdm_fields",
    "cdm_tables",
    "connect",
    "create_table_sql",
    "init_cdm",
    "load_vocabulary",
    "sql_type",
    "vocabulary_version",
]


def create_hub(path: str, vocabulary: str | None = None) -> HubDatabase:
    """Open ``path`` (DuckDB file or ``postgresql://`` URL), create the CDM tables, load a vocabulary."""
    from pathlib import Path

    from healthmesh.cdm.attach import refuse_cdm_writes

    db = connect(path)
    try:
        refuse_cdm_writes(db, "loading data")  # ingest and cdm init: an attached CDM is read-only
    except BaseException:
        db.close()
        raise
    init_cdm(db)
    if vocabulary is not None or not db.scalar("SELECT count(*) FROM concept"):
        if db.dialect == "postgres":  # read and derived in a scratch DuckDB, then copied over
            from healthmesh.cdm.postgres import load_vocabulary_postgres

            load_vocabulary_postgres(db, Path(vocabulary) if vocabulary else None)
        else:
            load_vocabulary(db, Path(vocabulary) if vocabulary else None)
    return db


__all__ += ["create_hub"]
__all__.sort()
