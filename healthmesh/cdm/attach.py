"""Attach an existing OMOP CDM (v5.3 or v5.4) to a hub, read-only.

A hospital that already runs an OMOP CDM keeps it where it is. The hub's own database (a new DuckDB
file, or the schema ``main`` of a PostgreSQL database) holds a one-row attachment record and one
view per CDM v5.4 table over the existing CDM; healthmesh's own tables (audit, tokens, reports) are
created next to the views, never in the CDM. So every verb reads the CDM through the names it
already uses, and nothing can write it:

* DuckDB: ``connect`` attaches the CDM file ``(READ_ONLY)`` as catalog ``hm_cdm``; the views name
  ``hm_cdm.<schema>.<table>``. An INSERT into a view or into the read-only catalog fails.
* PostgreSQL: the CDM, vocabulary and results schemas live in the hub's database; the views name
  ``<schema>.<table>``. The hub's role needs only USAGE and SELECT on them.

The views also bridge CDM v5.3: renamed columns (``admitting_source_concept_id`` ->
``admitted_from_concept_id``...) are aliased, v5.4 columns the source lacks read as typed NULLs, a
table the source lacks (``episode``...) reads as empty, and columns whose type family differs from
the spec's (text dates, numeric values) are cast. A CDM without the tables every verb needs is
refused at attach time, with the reason.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from healthmesh.cdm.schema import cdm_tables, sql_type
from healthmesh.cdm.vocabulary import VOCABULARY_TABLES
from healthmesh.errors import CDMError

if TYPE_CHECKING:
    from healthmesh.cdm.database import HubDatabase

__all__ = [
    "ATTACHMENT_TABLE",
    "CDM_CATALOG",
    "Attachment",
    "attach_cdm",
    "read_attachment",
    "refuse_cdm_writes",
    "search_path_sql",
]

ATTACHMENT_TABLE = "hm_attachment"
CDM_CATALOG = "hm_cdm"  # the DuckDB catalog name of an attached CDM file

_VOCABULARY = frozenset(VOCABULARY_TABLES)
_RESULTS = {"cohort", "cohort_definition"}
# Without these no verb can answer: refuse the attachment rather than answer from an empty view.
_REQUIRED = ("person", "observation_period", "concept")
# CDM v5.3 names of columns v5.4 renamed (v5.4 name -> v5.3 name).
_V53_NAMES = {
    "visit_occurrence": {
        "admitted_from_concept_id": "admitting_source_concept_id",
        "admitted_from_source_value": "admitting_source_value",
        "discharged_to_concept_id": "discharge_to_concept_id",
        "discharged_to_source_value": "discharge_to_source_value",
    },
    "visit_detail": {
        "admitted_from_concept_id": "admitting_source_concept_id",
        "admitted_from_source_value": "admitting_source_value",
        "discharged_to_concept_id": "discharge_to_concept_id",
        "discharged_to_source_value": "discharge_to_source_value",
        "parent_visit_detail_id": "visit_detail_parent_id",
    },
}


@dataclass
class Attachment:
    """Where the attached CDM is, and how its views bridge it to CDM v5.4."""

    cdm: str  # DuckDB file (absolute path), or the PostgreSQL database (URL without password)
    cdm_schema: str
    vocab_schema: str
    results_schema: str
    cdm_version: str = "5.4"
    empty_tables: list[str] = field(default_factory=list)
    renamed_columns: list[str] = field(default_factory=list)
    null_columns: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Attachment:
        data = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def describe(self) -> str:
        schemas = f"cdm {self.cdm_schema}, vocabulary {self.vocab_schema}, results {self.results_schema}"
        return f"{self.cdm} (CDM v{self.cdm_version}; {schemas})"


def refuse_cdm_writes(db: HubDatabase, verb: str, error: type[Exception] = CDMError) -> None:
    """Raise ``error`` with the reason when ``db`` is a hub attached to an existing CDM."""
    attachment = getattr(db, "attachment", None)
    if attachment is not None:
        raise error(
            f"{verb} writes the CDM, and this hub's CDM is attached read-only from {attachment.cdm}; "
            "load data into that CDM with its own ETL"
        )


# --- reading the record ------------------------------------------------------------------------


def _has_table(db: HubDatabase, name: str) -> bool:
    if db.dialect == "postgres":
        return bool(db.scalar(f"SELECT to_regclass('main.{name}') IS NOT NULL"))
    return bool(
        db.scalar(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = 'main' AND table_name = ?",
            [name],
        )
    )


def read_attachment(db: HubDatabase) -> Attachment | None:
    """The hub's attachment record, or None for a hub that holds its own CDM."""
    if not _has_table(db, ATTACHMENT_TABLE):
        return None
    text = db.scalar(f"SELECT record FROM main.{ATTACHMENT_TABLE}")
    return Attachment.from_json(str(text)) if text else None


def attach_duckdb_catalog(db: HubDatabase, attachment: Attachment) -> None:
    """Attach the CDM file read-only (once per database instance: cursors share it)."""
    attached = db.scalar("SELECT count(*) FROM duckdb_databases() WHERE database_name = ?", [CDM_CATALOG])
    if attached:
        return
    source = Path(attachment.cdm)
    if not source.is_file():
        raise CDMError(f"the attached CDM {source} is missing; attach it again with `healthmesh cdm attach`")
    quoted = str(source).replace("'", "''")
    db.execute(f"ATTACH '{quoted}' AS {CDM_CATALOG} (READ_ONLY)")


def search_path_sql(attachment: Attachment, dialect: str) -> str:
    """The hub's own schema first (its views and tables), then the CDM's schemas: other tables of the
    CDM (an ``achilles_results``, v5.3's ``attribute_definition``) resolve unqualified, read-only."""
    schemas = list(dict.fromkeys([attachment.cdm_schema, attachment.vocab_schema, attachment.results_schema]))
    if dialect == "postgres":
        return "SET search_path TO main, " + ", ".join(f'"{s}"' for s in schemas)
    return "SET search_path = '" + ",".join(["main", *(f"{CDM_CATALOG}.{s}" for s in schemas)]) + "'"


# --- making the views --------------------------------------------------------------------------


def _source_columns(db: HubDatabase, schemas: list[str]) -> dict[str, dict[str, dict[str, str]]]:
    """schema -> table -> column -> data type, of the attached CDM."""
    marks = ", ".join("?" for _ in schemas)
    if db.dialect == "postgres":
        sql = (
            "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema IN ({marks})"
        )
        params: list[Any] = list(schemas)
    else:
        sql = (
            "SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns() "
            f"WHERE database_name = ? AND schema_name IN ({marks})"
        )
        params = [CDM_CATALOG, *schemas]
    found: dict[str, dict[str, dict[str, str]]] = {}
    for schema, table, column, data_type in db.rows(sql, params):
        found.setdefault(str(schema), {}).setdefault(str(table).lower(), {})[str(column).lower()] = str(
            data_type
        ).upper()
    return found


def _family(data_type: str) -> str:
    """Types that read alike in our SQL: no cast between them (a cast would hide an index)."""
    t = data_type.upper()
    if any(k in t for k in ("INT", "SERIAL")):
        return "integer"
    if any(k in t for k in ("DOUBLE", "FLOAT", "REAL", "NUMERIC", "DECIMAL")):
        return "float"
    if t.startswith("TIMESTAMP"):
        return "timestamp"
    if t == "DATE":
        return "date"
    return "text"


def _column_expression(source: str | None, source_type: str, target: str, target_type: str) -> str:
    if source is None:
        return f'CAST(NULL AS {target_type}) AS "{target}"'
    if _family(source_type) == _family(target_type):
        return f'"{source}" AS "{target}"'
    return f'CAST("{source}" AS {target_type}) AS "{target}"'


def _pick_schema(table: str, found: dict[str, dict[str, dict[str, str]]], a: Attachment) -> str | None:
    preferred = a.vocab_schema if table in _VOCABULARY else a.results_schema if table in _RESULTS else None
    for schema in [preferred, a.cdm_schema, a.vocab_schema, a.results_schema]:
        if schema is not None and table in found.get(schema, {}):
            return schema
    return None


def _view_sql(db: HubDatabase, table: str, found: dict[str, Any], a: Attachment) -> str:
    fields = cdm_tables()[table]
    schema = _pick_schema(table, found, a)
    if schema is None:
        a.empty_tables.append(table)
        columns = ", ".join(f'CAST(NULL AS {sql_type(f.datatype, db.dialect)}) AS "{f.name}"' for f in fields)
        return f"CREATE VIEW main.{table} AS SELECT {columns} WHERE false"
    present: dict[str, str] = found[schema][table]
    expressions = []
    for f in fields:
        source: str | None = f.name if f.name in present else None
        old = _V53_NAMES.get(table, {}).get(f.name)
        if source is None and old in present:
            source = old
            a.renamed_columns.append(f"{table}.{old} -> {f.name}")
        if source is None:
            if table in _REQUIRED and f.required:
                raise CDMError(f"cannot attach: the CDM's {table} has no column {f.name}")
            a.null_columns.append(f"{table}.{f.name}")
        target_type = sql_type(f.datatype, db.dialect)
        expressions.append(_column_expression(source, present.get(source or "", ""), f.name, target_type))
    where = f"{CDM_CATALOG}.{schema}" if db.dialect == "duckdb" else schema
    return f"CREATE VIEW main.{table} AS SELECT {', '.join(expressions)} FROM {where}.{table}"


def _cdm_version(db: HubDatabase, a: Attachment) -> str:
    if a.renamed_columns or "episode" in a.empty_tables:
        return "5.3"
    try:
        version = db.scalar("SELECT max(cdm_version) FROM main.cdm_source")
    except CDMError:
        version = None
    text = str(version or "").lower().lstrip("v")
    return "5.3" if text.startswith("5.3") else "5.4"


def _build_concept_map(db: HubDatabase) -> None:
    """healthmesh's lookup of (vocabulary, code) -> standard concept and domain, derived from the
    attached vocabulary into the hub's own schema (as ``load_vocabulary`` builds it for a hub's own CDM)."""
    db.execute("DROP TABLE IF EXISTS main.hm_concept_map")
    db.execute(
        """
        CREATE TABLE main.hm_concept_map AS
        WITH maps AS (
            SELECT r.concept_id_1 AS source_id, min(r.concept_id_2) AS standard_id
            FROM concept_relationship r JOIN concept t ON t.concept_id = r.concept_id_2
            WHERE r.relationship_id = 'Maps to' AND r.invalid_reason IS NULL AND t.standard_concept = 'S'
            GROUP BY r.concept_id_1
        )
        SELECT DISTINCT ON (c.vocabulary_id, c.concept_code)
               c.vocabulary_id, c.concept_code, c.concept_id AS source_concept_id,
               coalesce(CASE WHEN c.standard_concept = 'S' THEN c.concept_id END, m.standard_id, 0) AS concept_id,
               coalesce(s.domain_id, c.domain_id) AS domain_id
        FROM concept c
        LEFT JOIN maps m ON m.source_id = c.concept_id
        LEFT JOIN concept s
          ON s.concept_id = coalesce(CASE WHEN c.standard_concept = 'S' THEN c.concept_id END, m.standard_id)
        ORDER BY c.vocabulary_id, c.concept_code, coalesce(c.standard_concept = 'S', false) DESC,
                 c.invalid_reason IS NOT NULL, c.concept_id
        """
    )
    if db.dialect == "postgres":
        db.execute("CREATE INDEX hm_concept_map_code ON main.hm_concept_map (vocabulary_id, concept_code)")


def _drop_views(db: HubDatabase) -> None:
    if db.dialect == "postgres":
        for (name,) in db.rows("SELECT table_name FROM information_schema.views WHERE table_schema = 'main'"):
            if name in cdm_tables():
                db.execute(f'DROP VIEW IF EXISTS main."{name}" CASCADE')
    else:
        for (name,) in db.rows(
            "SELECT view_name FROM duckdb_views() WHERE database_name = current_database() "
            "AND schema_name = 'main' AND NOT internal"
        ):
            if name in cdm_tables():
                db.execute(f'DROP VIEW IF EXISTS main."{name}"')


def attach_cdm(db: HubDatabase, attachment: Attachment) -> Attachment:
    """Write the attachment record and the views into the hub database ``db`` (its own, writable)."""
    if _has_table(db, "person") and read_attachment(db) is None:
        raise CDMError(
            "this hub database already holds its own CDM; attach into a new DuckDB file "
            "(or a PostgreSQL database without a hub)"
        )
    if db.dialect == "duckdb":
        if db.path is not None and Path(attachment.cdm).resolve() == db.path.resolve():
            raise CDMError("the attached CDM must be another file than the hub's own database")
        db.execute(f"DETACH DATABASE IF EXISTS {CDM_CATALOG}")
        attach_duckdb_catalog(db, attachment)
    schemas = sorted({attachment.cdm_schema, attachment.vocab_schema, attachment.results_schema})
    found = _source_columns(db, schemas)
    missing_schemas = sorted({s for s in (attachment.cdm_schema, attachment.vocab_schema) if s not in found})
    if missing_schemas:
        raise CDMError(f"cannot attach: no tables in schema {', '.join(missing_schemas)} of {attachment.cdm}")
    for table in _REQUIRED:
        if _pick_schema(table, found, attachment) is None:
            raise CDMError(f"cannot attach: the CDM has no {table} table (looked in {', '.join(schemas)})")
    attachment.empty_tables, attachment.renamed_columns, attachment.null_columns = [], [], []
    statements = [_view_sql(db, table, found, attachment) for table in cdm_tables()]
    db.execute("BEGIN")
    try:
        _drop_views(db)
        for sql in statements:
            db.execute(sql)
        attachment.cdm_version = _cdm_version(db, attachment)
        _build_concept_map(db)
        db.execute(f"CREATE TABLE IF NOT EXISTS main.{ATTACHMENT_TABLE} (record TEXT)")
        db.execute(f"DELETE FROM main.{ATTACHMENT_TABLE}")
        db.execute(f"INSERT INTO main.{ATTACHMENT_TABLE} VALUES (?)", [attachment.to_json()])
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.attachment = attachment
    if db.dialect == "postgres":
        db.raw.execute(search_path_sql(attachment, "postgres"))  # type: ignore[attr-defined]
    else:
        db.execute(search_path_sql(attachment, "duckdb"))
    return attachment
