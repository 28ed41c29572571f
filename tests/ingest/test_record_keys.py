"""Record keys are a hub's contract with its own past loads: the same resource must get the same
key in every version, or a re-sent record would land twice."""

from __future__ import annotations

import hashlib
from importlib import resources

import duckdb
import pytest


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.execute("SET VARIABLE hm_salt = 'a-hub-salt'")
    macros = resources.files("healthmesh.ingest.fhir").joinpath("macros.sql").read_text()
    for statement in macros.split(";\n"):
        if statement.strip():
            connection.execute(statement)
    return connection


@pytest.mark.parametrize("rid", ["", "p1", "urn:uuid:0f5b9d3a", "é漢字", "o'k", "x" * 5000])
def test_a_key_is_the_first_15_hex_digits_of_the_salted_md5(con: duckdb.DuckDBPyConnection, rid: str) -> None:
    expected = int(hashlib.md5(f"a-hub-salt|Patient|{rid}".encode()).hexdigest()[:15], 16)
    assert con.execute("SELECT hm_key('Patient', ?)", [rid]).fetchone() == (expected,)


def test_keys_over_many_ids_match_and_null_stays_null(con: duckdb.DuckDBPyConnection) -> None:
    rows = con.execute(
        "SELECT id, hm_key('Observation', id) FROM (SELECT uuid()::VARCHAR AS id FROM range(2000))"
    ).fetchall()
    for rid, key in rows:
        assert key == int(hashlib.md5(f"a-hub-salt|Observation|{rid}".encode()).hexdigest()[:15], 16)
    assert con.execute("SELECT hm_key('Patient', NULL)").fetchone() == (None,)
