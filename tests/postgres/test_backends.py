"""The same DuckDB-dialect SQL gives the same answers on DuckDB and on PostgreSQL."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from healthmesh.cdm import HubDatabase, connect
from healthmesh.cdm.postgres import is_postgres_url, redact_url, to_postgres_sql
from healthmesh.errors import CDMError


def _seed(db: HubDatabase) -> None:
    db.execute("CREATE OR REPLACE TEMP TABLE hm_t AS SELECT 1 AS k, 'a' AS s")  # replaced below: no error
    db.execute(
        "CREATE OR REPLACE TEMP TABLE hm_t AS SELECT * FROM (VALUES (1, 'a%', DATE '2021-01-04', 2.5), "
        "(2, 'b', DATE '2020-12-31', NULL), (2, 'c', DATE '2021-06-15', 4.0)) v(k, s, d, x)"
    )


def test_dialect_gaps_are_filled(backend_db: HubDatabase) -> None:
    _seed(backend_db)
    assert backend_db.rows("SELECT k, count(*), sum(x) FROM hm_t GROUP BY ALL ORDER BY k") == [
        (1, 1, 2.5),
        (2, 2, 4.0),
    ]
    assert backend_db.rows(
        "SELECT year(d), month(d), strftime(d, '%G-W%V'), make_date(year(d)::INTEGER, 1, 1) FROM hm_t ORDER BY d"
    ) == [
        (2020, 12, "2020-W53", date(2020, 1, 1)),
        (2021, 1, "2021-W01", date(2021, 1, 1)),
        (2021, 6, "2021-W24", date(2021, 1, 1)),
    ]
    assert backend_db.scalar("SELECT count(*) FROM hm_t WHERE s LIKE ? AND k = ?", ["a%", 1]) == 1
    assert backend_db.scalar("SELECT any_value(s) FROM hm_t WHERE k = 1") == "a%"
    assert backend_db.rows(
        "SELECT arg_max(s, d), arg_min(s, d), arg_max(s, x), arg_max(s, (k, d)) FROM hm_t"
    ) == [("c", "b", "c", "c")]
    years = backend_db.rows(
        "SELECT y FROM hm_t, LATERAL (SELECT unnest(range(2019, year(d))) AS y) r WHERE k = 1"
    )
    assert sorted(r[0] for r in years) == [2019, 2020]
    assert (
        backend_db.scalar(
            "SELECT count(*) FROM (SELECT k FROM hm_t QUALIFY row_number() OVER (PARTITION BY k ORDER BY d) = 1)"
        )
        == 2
    )


def test_insert_by_name_and_registered_frames(backend_db: HubDatabase) -> None:
    backend_db.execute("CREATE OR REPLACE TEMP TABLE hm_n (a BIGINT, b VARCHAR, c DATE)")
    backend_db.execute("INSERT INTO hm_n BY NAME SELECT 'x' AS b, 7 AS a")
    frame = pd.DataFrame({"a": [1, 2], "b": ["p", None], "c": [date(2020, 1, 1), date(2020, 2, 1)]})
    backend_db.con.register("hm_frame", frame)
    try:
        backend_db.execute("INSERT INTO hm_n SELECT a, b, c FROM hm_frame")
    finally:
        backend_db.con.unregister("hm_frame")
    assert backend_db.rows("SELECT a, b, c FROM hm_n ORDER BY a") == [
        (1, "p", date(2020, 1, 1)),
        (2, None, date(2020, 2, 1)),
        (7, "x", None),
    ]
    assert "hm_frame" not in backend_db.tables()


def test_frames_have_duckdb_dtypes(backend_db: HubDatabase) -> None:
    _seed(backend_db)
    frame = backend_db.df("SELECT k, CAST(k AS INTEGER) AS i, s, d, x, k > 1 AS b FROM hm_t ORDER BY k, d")
    assert {c: str(t) for c, t in frame.dtypes.items()} == {
        "k": "int32",
        "i": "int32",
        "s": "object",
        "d": "datetime64[us]",
        "x": "float64",
        "b": "bool",
    }
    cells = backend_db.con.execute("SELECT CAST(k AS BIGINT) AS k, x FROM hm_t ORDER BY k, d").fetchnumpy()
    assert cells["k"].tolist() == [1, 2, 2]


def test_a_bad_statement_is_one_clear_cdm_error(backend_db: HubDatabase) -> None:
    with pytest.raises(CDMError, match="no_such_table"):
        backend_db.rows("SELECT * FROM no_such_table")
    assert backend_db.scalar("SELECT 1") == 1  # the connection still works


@pytest.mark.postgres
def test_an_unreachable_server_is_one_line_with_the_fix() -> None:
    with pytest.raises(
        CDMError,
        match=r"cannot connect to PostgreSQL at postgresql://u:\*\*\*@127\.0\.0\.1:1/x.*postgres\.sh",
    ):
        connect("postgresql://u:secret@127.0.0.1:1/x")


def test_urls_are_told_from_paths_and_passwords_hidden() -> None:
    from pathlib import Path

    assert is_postgres_url("postgresql://u@h/db") and is_postgres_url(Path("postgresql://u@h/db"))
    assert not is_postgres_url("hubs/postgresql.duckdb")
    assert redact_url("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    ((sql, has_params),) = to_postgres_sql("SELECT * FROM t WHERE a LIKE '%x' AND b = ?")
    assert has_params and sql.endswith("LIKE '%%x' AND b = %s")
