"""A hub's CDM in PostgreSQL, behind the same ``HubDatabase`` seam as DuckDB.

Domain SQL is written once in DuckDB's dialect. ``PostgresHubDatabase`` transpiles each statement
with sqlglot (cached) and fills the gaps sqlglot leaves: ``CREATE OR REPLACE TABLE`` becomes a drop
and a create, ``GROUP BY ALL`` lists the non-aggregate columns, ``INSERT ... BY NAME`` gets its
column list from the select's names, ``year()`` stays an integer. Its ``con`` answers the DuckDB
calls the domains make (``execute(...).fetchall() / .df() / .fetchnumpy()``, ``register`` of a
DataFrame, ``executemany``), so a domain runs unchanged on either engine. The CDM lives in the
schema ``main`` (DuckDB's name for it), so catalog queries read the same on both engines.
Bulk moves between DuckDB and PostgreSQL go through CSV and ``COPY`` (DuckDB's postgres extension
cannot be downloaded here).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import psycopg
from psycopg.adapt import Loader

from healthmesh.cdm.database import POSTGRES_URL, HubDatabase, is_postgres_url
from healthmesh.cdm.pg_transpile import to_postgres_sql
from healthmesh.errors import CDMError

__all__ = [
    "INDEXES",
    "SCHEMA",
    "PostgresConnection",
    "PostgresHubDatabase",
    "PostgresQueryError",
    "PostgresResult",
    "connect_postgres",
    "copy_duckdb_to_postgres",
    "copy_postgres_to_duckdb",
    "copy_rows",
    "create_indexes",
    "is_postgres_url",
    "load_vocabulary_postgres",
    "normalise_url",
    "redact_url",
    "to_postgres_sql",
]

SCHEMA = "main"
_COPY_CHUNK = 1 << 20


class PostgresQueryError(CDMError, duckdb.Error):
    """A failed statement on PostgreSQL. Also a ``duckdb.Error``, so domain code that translates
    DuckDB's errors (``except duckdb.Error``) translates these the same way."""


def normalise_url(target: object) -> str:
    return POSTGRES_URL.sub("postgresql://", str(target), count=1)


def redact_url(url: str) -> str:
    """The URL without its password, for reports and messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


# --- results shaped like DuckDB's ---------------------------------------------------------------


class _NumberLoader(Loader):
    """NUMERIC as int or float (as DuckDB hands back sums and averages), never Decimal."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        try:
            return int(text)
        except ValueError:
            return float(text)


_INT_OIDS = {20, 21, 23}
_FLOAT_OIDS = {700, 701}
_DATE_OIDS = {1082, 1114, 1184}
_BOOL_OID = 16
_NUMERIC_OID = 1700


class PostgresResult:
    """The rows of one statement, with DuckDB's fetch methods."""

    def __init__(self, columns: list[tuple[str, int]], rows: list[tuple[Any, ...]]) -> None:
        self.description = [(name, oid) for name, oid in columns]
        self._rows = rows
        self._next = 0

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._next = self._rows[self._next :], len(self._rows)
        return rows

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def df(self) -> pd.DataFrame:
        data = {}
        values = list(zip(*self._rows, strict=True)) if self._rows else [()] * len(self.description)
        for (name, oid), column in zip(self.description, values, strict=True):
            data[name] = _series(list(column), oid)
        return pd.DataFrame(data)

    fetchdf = df

    def fetchnumpy(self) -> dict[str, np.ndarray]:
        frame = self.df()
        return {name: frame[name].to_numpy() for name in frame.columns}


def _series(values: list[Any], oid: int) -> pd.Series:
    has_null = any(v is None for v in values)
    if oid == _NUMERIC_OID:
        oid = 20 if all(isinstance(v, int) for v in values if v is not None) else 701
    if oid in _INT_OIDS:
        bits = "32" if oid == 23 else "16" if oid == 21 else "64"  # DuckDB keeps INTEGER 32-bit too
        return pd.Series(values, dtype=f"Int{bits}" if has_null else f"int{bits}")
    if oid in _FLOAT_OIDS:
        return pd.Series([np.nan if v is None else v for v in values], dtype="float64")
    if oid in _DATE_OIDS:
        return (
            pd.Series(pd.to_datetime(pd.Series(values, dtype="object")), dtype="datetime64[us]")
            if oid != 1184
            else pd.Series(pd.to_datetime(values, utc=True))
        )
    if oid == _BOOL_OID:
        return pd.Series(values, dtype="boolean" if has_null else "bool")
    return pd.Series(values, dtype="object")


# --- the connection ----------------------------------------------------------------------------


class PostgresConnection:
    """A psycopg connection that answers the DuckDB connection calls the domains make."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def _run(self, sql: str, params: Sequence[Any] | dict[str, Any] | None) -> PostgresResult:
        statements = to_postgres_sql(sql)
        result = PostgresResult([], [])
        try:
            with self.raw.cursor() as cursor:
                for text, takes_params in statements:
                    cursor.execute(text, params if takes_params and params else None)  # type: ignore[arg-type]
                    if cursor.description is not None:
                        columns = [(c.name, c.type_code) for c in cursor.description]
                        result = PostgresResult(columns, cursor.fetchall())
        except psycopg.Error as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise PostgresQueryError(f"query failed on PostgreSQL: {message}") from error
        return result

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> PostgresResult:
        return self._run(sql, params)

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        ((text, _),) = to_postgres_sql(sql)
        try:
            with self.raw.cursor() as cursor:
                cursor.executemany(text, list(params))  # type: ignore[arg-type]
        except psycopg.Error as error:
            raise PostgresQueryError(f"query failed on PostgreSQL: {error}") from error

    def register(self, name: str, frame: pd.DataFrame) -> None:
        """Like DuckDB's ``register``: the frame becomes a (temp) table that SQL can read by ``name``."""
        self.unregister(name)
        columns = ", ".join(f'"{c}" {_pg_type(frame[c])}' for c in frame.columns)
        self._run(f"CREATE TEMP TABLE {name} ({columns})", None)
        if len(frame):
            copy_rows(self.raw, name, list(frame.columns), _python_rows(frame))

    def unregister(self, name: str) -> None:
        self._run(f"DROP TABLE IF EXISTS {name}", None)

    def close(self) -> None:
        self.raw.close()


def _pg_type(column: pd.Series) -> str:
    kind = column.dtype.kind
    if kind in "iu":
        return "BIGINT"
    if kind == "f":
        return "DOUBLE PRECISION"
    if kind == "b":
        return "BOOLEAN"
    if kind == "M":
        return "TIMESTAMP"
    sample = column.dropna()
    first = sample.iloc[0] if len(sample) else None
    if isinstance(first, bool | np.bool_):
        return "BOOLEAN"
    if isinstance(first, int | np.integer):
        return "BIGINT"
    if isinstance(first, float | np.floating):
        return "DOUBLE PRECISION"
    if isinstance(first, datetime | pd.Timestamp):
        return "TIMESTAMP"
    if isinstance(first, date):
        return "DATE"
    return "TEXT"


def _python_rows(frame: pd.DataFrame) -> Iterator[tuple[Any, ...]]:
    cleaned = frame.astype(object).where(frame.notna(), None)
    for row in cleaned.itertuples(index=False, name=None):
        yield tuple(v.item() if isinstance(v, np.generic) else v for v in row)


def copy_rows(
    raw: psycopg.Connection[Any], table: str, columns: list[str], rows: Iterable[Sequence[Any]]
) -> None:
    names = ", ".join(f'"{c}"' for c in columns)
    with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


class PostgresHubDatabase(HubDatabase):
    """A hub's CDM in PostgreSQL (schema ``main``); the same methods as the DuckDB one."""

    dialect = "postgres"

    def __init__(self, con: PostgresConnection, url: str) -> None:
        self.con = con  # type: ignore[assignment]
        self.raw: psycopg.Connection[Any] = con.raw
        self.path = None
        self.url = url

    @contextmanager
    def unordered(self) -> Iterator[None]:
        yield  # PostgreSQL never promises insertion order

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> None:
        self.con.execute(sql, params)

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, params).fetchall()

    def df(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        return self.con.execute(sql, params).df()

    def tables(self) -> set[str]:
        """Tables of the hub and this session's temp tables (as DuckDB's ``main`` lists both)."""
        return {
            r[0]
            for r in self.raw.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "OR table_schema = (SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema())",
                [SCHEMA],
            ).fetchall()
        }

    def cursor(self) -> PostgresHubDatabase:
        """Another connection to the same database, for another thread (close it when done)."""
        other = connect_postgres(self.url, read_attachment_record=False)
        other.attachment = self.attachment
        if self.attachment is not None:
            from healthmesh.cdm.attach import search_path_sql

            other.raw.execute(search_path_sql(self.attachment, "postgres"))
        return other

    def __repr__(self) -> str:
        return f"PostgresHubDatabase({redact_url(self.url)!r})"


# PostgreSQL answers one person's lookups (scoring, the API) from an index instead of a table scan;
# DuckDB's zone maps make indexes unnecessary there. The set of OHDSI's own index script, trimmed.
INDEXES = {
    "person": "person_id",
    "observation_period": "person_id",
    "visit_occurrence": "person_id",
    "condition_occurrence": "person_id",
    "drug_exposure": "person_id",
    "procedure_occurrence": "person_id",
    "measurement": "person_id",
    "observation": "person_id",
    "device_exposure": "person_id",
    "death": "person_id",
    "concept": "concept_id",
    "concept_ancestor": "ancestor_concept_id",
    "concept_relationship": "concept_id_1",
}


def create_indexes(db: HubDatabase) -> None:
    """The indexes above, where missing."""
    for table, column in INDEXES.items():
        db.execute(f"CREATE INDEX IF NOT EXISTS hm_{table}_{column} ON {table} ({column})")


def connect_postgres(url: str, read_attachment_record: bool = True) -> PostgresHubDatabase:
    """Open the hub database at a ``postgresql://`` URL; creates the schema ``main`` when missing.

    A hub attached to an existing CDM (``healthmesh.cdm.attach``) reads it through views in ``main``;
    its role needs no right on the CDM's schemas beyond USAGE and SELECT."""
    url = normalise_url(url)
    try:
        raw = psycopg.connect(url, autocommit=True, cursor_factory=psycopg.ClientCursor)
    except psycopg.Error as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CDMError(
            f"cannot connect to PostgreSQL at {redact_url(url)}: {reason}; is the server running "
            "(`bash scripts/postgres.sh` starts a local one)?"
        ) from error
    raw.adapters.register_loader("numeric", _NumberLoader)
    try:
        # Looked up first: CREATE SCHEMA IF NOT EXISTS needs the CREATE right on the database even
        # when the schema exists, which a hub's role on a hospital's server may lack.
        if raw.execute("SELECT to_regnamespace(%s) IS NULL", [SCHEMA]).fetchone() == (True,):
            raw.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    except psycopg.Error as error:
        raw.close()
        raise CDMError(f"cannot create schema {SCHEMA} at {redact_url(url)}: {error}") from error
    raw.execute(f"SET search_path TO {SCHEMA}")
    # The CDM's queries are many and short at hub sizes: compiling them costs more than it saves
    # (all quality checks on 10,000 people: 7.8 s with JIT, 7.0 s without).
    raw.execute("SET jit = off")
    db = PostgresHubDatabase(PostgresConnection(raw), url)
    if read_attachment_record:
        from healthmesh.cdm.attach import read_attachment, search_path_sql

        try:
            db.attachment = read_attachment(db)
            if db.attachment is not None:
                raw.execute(search_path_sql(db.attachment, "postgres"))
        except BaseException:
            db.close()
            raise
    return db


# --- bulk copies between the engines -----------------------------------------------------------


def copy_duckdb_to_postgres(
    source: duckdb.DuckDBPyConnection,
    select_sql: str,
    target: PostgresHubDatabase,
    table: str,
    columns: list[str],
) -> int:
    """Append the rows of a DuckDB query to a PostgreSQL table (CSV through a temp file and COPY)."""
    with tempfile.TemporaryDirectory(prefix="hm-copy-") as folder:
        path = Path(folder) / "rows.csv"
        source.execute(f"COPY ({select_sql}) TO '{path}' (FORMAT csv, HEADER false)")
        names = ", ".join(f'"{c}"' for c in columns)
        try:
            with target.raw.cursor() as cursor:
                with (
                    cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT csv)") as copy,
                    path.open("rb") as handle,
                ):
                    while chunk := handle.read(_COPY_CHUNK):
                        copy.write(chunk)
                return cursor.rowcount
        except psycopg.Error as error:
            raise PostgresQueryError(f"copy into {table} failed on PostgreSQL: {error}") from error


def copy_postgres_to_duckdb(
    source: PostgresHubDatabase,
    select_sql: str,
    target: duckdb.DuckDBPyConnection,
    table: str,
    types: dict[str, str],
) -> None:
    """Append the rows of a PostgreSQL query to a DuckDB table whose columns are ``types``."""
    with tempfile.TemporaryDirectory(prefix="hm-copy-") as folder:
        path = Path(folder) / "rows.csv"
        try:
            with (
                source.raw.cursor() as cursor,
                cursor.copy(f"COPY ({select_sql}) TO STDOUT (FORMAT csv)") as copy,
            ):
                with path.open("wb") as handle:
                    for chunk in copy:
                        handle.write(chunk)
        except psycopg.Error as error:
            raise PostgresQueryError(f"copy out of PostgreSQL failed: {error}") from error
        spec = "{" + ", ".join(f"'{c}': '{t}'" for c, t in types.items()) + "}"
        target.execute(
            f"INSERT INTO {table} SELECT * FROM read_csv('{path}', header=false, columns={spec}, "
            "allow_quoted_nulls=false, auto_detect=false)"
        )


# --- vocabulary --------------------------------------------------------------------------------

_CONCEPT_MAP_DDL = (
    "CREATE TABLE IF NOT EXISTS hm_concept_map (vocabulary_id TEXT, concept_code TEXT, "
    "source_concept_id BIGINT, concept_id BIGINT, domain_id TEXT)"
)


def load_vocabulary_postgres(db: HubDatabase, directory: Path | None = None) -> dict[str, int]:
    """``load_vocabulary`` for PostgreSQL: read, supplement and derive in a scratch DuckDB (the one
    vocabulary code path), then replace the hub's vocabulary tables with COPY in one transaction."""
    if not isinstance(db, PostgresHubDatabase):
        raise CDMError("load_vocabulary_postgres needs a PostgreSQL hub; use load_vocabulary for DuckDB")
    from healthmesh.cdm.attach import refuse_cdm_writes

    refuse_cdm_writes(db, "loading a vocabulary")
    from healthmesh.cdm.database import connect, init_cdm
    from healthmesh.cdm.schema import cdm_tables
    from healthmesh.cdm.vocabulary import VOCABULARY_TABLES, load_vocabulary

    with connect(":memory:") as scratch:
        init_cdm(scratch)
        counts = load_vocabulary(scratch, directory)
        db.execute(_CONCEPT_MAP_DDL)
        tables = {t: [f.name for f in cdm_tables()[t]] for t in VOCABULARY_TABLES}
        tables["hm_concept_map"] = [
            "vocabulary_id",
            "concept_code",
            "source_concept_id",
            "concept_id",
            "domain_id",
        ]
        db.execute("BEGIN")
        try:
            for table, columns in tables.items():
                db.execute(f"DELETE FROM {table}")
                quoted = ", ".join(f'"{c}"' for c in columns)
                copy_duckdb_to_postgres(scratch.con, f"SELECT {quoted} FROM {table}", db, table, columns)
            db.execute("COMMIT")
        except BaseException:
            db.raw.execute("ROLLBACK")
            raise
    db.execute(
        "CREATE INDEX IF NOT EXISTS hm_concept_map_code ON hm_concept_map (vocabulary_id, concept_code)"
    )
    db.execute("ANALYZE")
    return counts
