"""OMOP CDM v5.4 DDL, generated from the OHDSI field-level specification.

The spec CSV (OHDSI/CommonDataModel, Apache-2.0) is vendored in ``spec/``. Integer columns are
created as BIGINT: healthmesh keys are 60-bit keyed hashes (see ``healthmesh.ingest.keys``), which
do not fit in 32 bits. Primary keys are not declared as constraints (OHDSI ships them as a separate
optional script too); the quality checks verify their uniqueness instead.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["CDM_VERSION", "Field", "cdm_fields", "cdm_tables", "create_table_sql", "sql_type"]

CDM_VERSION = "5.4"


@dataclass(frozen=True)
class Field:
    table: str
    name: str
    required: bool
    datatype: str
    primary_key: bool
    foreign_table: str | None
    foreign_domain: str | None


@cache
def cdm_fields() -> tuple[Field, ...]:
    """Every field of the v5.4 spec, in spec order."""
    text = resources.files("healthmesh.cdm").joinpath("spec/OMOP_CDMv5.4_Field_Level.csv")
    with text.open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    return tuple(
        Field(
            table=row["cdmTableName"].strip().lower(),
            name=row["cdmFieldName"].strip().strip('"').lower(),
            required=row["isRequired"].strip().lower() == "yes",
            datatype=row["cdmDatatype"].strip().lower(),
            primary_key=row["isPrimaryKey"].strip().lower() == "yes",
            foreign_table=None if row["fkTableName"] in ("", "NA") else row["fkTableName"].lower(),
            foreign_domain=None if row["fkDomain"] in ("", "NA") else row["fkDomain"],
        )
        for row in rows
    )


def cdm_tables() -> dict[str, list[Field]]:
    """Fields grouped by table, tables in spec order."""
    tables: dict[str, list[Field]] = {}
    for field in cdm_fields():
        tables.setdefault(field.table, []).append(field)
    return tables


def sql_type(datatype: str, dialect: str = "duckdb") -> str:
    """The SQL type of a spec datatype (``integer``, ``varchar(50)``, ``datetime``...)."""
    datatype = datatype.lower()
    if datatype == "integer":
        return "BIGINT"
    if datatype == "float":
        return "DOUBLE PRECISION" if dialect == "postgres" else "DOUBLE"
    if datatype == "date":
        return "DATE"
    if datatype == "datetime":
        return "TIMESTAMP"
    if datatype.startswith("varchar"):
        return "TEXT" if dialect == "postgres" else "VARCHAR"
    raise ValueError(f"unknown CDM datatype {datatype!r}")


def create_table_sql(table: str, dialect: str = "duckdb") -> str:
    fields = cdm_tables()[table]
    columns = ",\n  ".join(
        f'"{f.name}" {sql_type(f.datatype, dialect)}{" NOT NULL" if f.required else ""}' for f in fields
    )
    return f"CREATE TABLE IF NOT EXISTS {table} (\n  {columns}\n)"
