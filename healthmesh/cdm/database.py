"""The storage seam: every domain talks to a hub's CDM through ``HubDatabase``.

DuckDB (a file) is the embedded default. SQL is written once in DuckDB's dialect; a
``postgresql://`` URL opens the PostgreSQL backend (``healthmesh.cdm.postgres``), which transpiles
it with sqlglot, so the domains run unchanged on either engine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from healthmesh.cdm.schema import cdm_tables, create_table_sql
from healthmesh.errors import CDMError

if TYPE_CHECKING:  # pandas costs a third of a second to import; only df() hands it out
    import pandas as pd

    from healthmesh.cdm.attach import Attachment

__all__ = ["POSTGRES_URL", "HubDatabase", "connect", "init_cdm", "is_postgres_url"]

POSTGRES_URL = re.compile(r"^postgres(?:ql)?(?:\+psycopg)?:/+", re.IGNORECASE)


def is_postgres_url(target: object) -> bool:
    """True for ``postgresql://...`` (also when a ``Path`` collapsed its ``//``)."""
    return bool(POSTGRES_URL.match(str(target)))


class HubDatabase:
    """A hub's CDM database. Use as a context manager or call ``close()``.

    ``attachment`` is set when the hub reads an existing CDM (``healthmesh.cdm.attach``): its CDM
    tables are then read-only views, and the verbs that write the CDM refuse.
    """

    dialect = "duckdb"
    attachment: Attachment | None = None

    def __init__(
        self, con: duckdb.DuckDBPyConnection, path: Path | None, attachment: Attachment | None = None
    ) -> None:
        self.con = con
        self.path = path
        self.attachment = attachment

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> None:
        try:
            self.con.execute(sql, params)
        except duckdb.Error as error:
            raise CDMError(f"query failed: {error}") from error

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            return self.con.execute(sql, params).fetchall()
        except duckdb.Error as error:
            raise CDMError(f"query failed: {error}") from error

    def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        row = self.rows(sql, params)
        return row[0][0] if row else None

    def df(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        try:
            return self.con.execute(sql, params).df()
        except duckdb.Error as error:
            raise CDMError(f"query failed: {error}") from error

    def tables(self) -> set[str]:
        """Tables and views of the hub and this connection's temp tables (not of an attached CDM file,
        which the hub reads through its views)."""
        return {
            r[0]
            for r in self.rows(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                "AND table_catalog IN (current_database(), 'temp')"
            )
        }

    def table_counts(self, tables: Sequence[str] | None = None) -> dict[str, int]:
        names = list(tables) if tables is not None else sorted(cdm_tables())
        present = self.tables()
        return {t: int(self.scalar(f"SELECT count(*) FROM {t}")) for t in names if t in present}

    @contextmanager
    def unordered(self) -> Iterator[None]:
        """Statements inside may write rows in any order: DuckDB then writes on every core without
        merging each thread's rows back into insertion order (for inserts whose order nobody reads)."""
        self.execute("SET preserve_insertion_order = false")
        try:
            yield
        finally:
            self.execute("SET preserve_insertion_order = true")

    def cursor(self) -> HubDatabase:
        """Another handle on the same database for another thread (close it when done)."""
        other = HubDatabase(self.con.cursor(), self.path, self.attachment)
        if self.attachment is not None:  # a cursor shares the attached catalog, not the search path
            from healthmesh.cdm.attach import search_path_sql

            other.execute(search_path_sql(self.attachment, self.dialect))
        return other

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> HubDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(path: str | Path, read_only: bool = False, threads: int | None = None) -> HubDatabase:
    """Open (or create) the hub database at ``path``: a DuckDB file, or a ``postgresql://`` URL."""
    if is_postgres_url(path):  # psycopg and pandas load only for a server database
        from healthmesh.cdm.postgres import connect_postgres

        return connect_postgres(str(path))
    target = Path(path)
    if read_only and not target.exists():
        raise CDMError(f"no hub database at {target}; create one with `healthmesh cdm init --db {target}`")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(target), read_only=read_only)
    except duckdb.Error as error:
        raise CDMError(f"cannot open hub database {target}: {error}") from error
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    db = HubDatabase(con, target)
    _open_attachment(db)
    return db


def _open_attachment(db: HubDatabase) -> None:
    """A hub attached to an existing CDM file: attach that file read-only under its views."""
    from healthmesh.cdm.attach import attach_duckdb_catalog, read_attachment, search_path_sql

    try:
        db.attachment = read_attachment(db)
        if db.attachment is not None:
            attach_duckdb_catalog(db, db.attachment)
            db.execute(search_path_sql(db.attachment, db.dialect))
    except BaseException:
        db.close()
        raise


def init_cdm(db: HubDatabase) -> list[str]:
    """Create every CDM v5.4 table that is missing; returns the table names.

    An attached hub has every table already (as views over its CDM): nothing to create."""
    tables = list(cdm_tables())
    if db.attachment is not None:
        return tables
    for table in tables:
        db.execute(create_table_sql(table, db.dialect))
    if db.dialect == "postgres":
        from healthmesh.cdm.postgres import create_indexes

        create_indexes(db)
    return tables
