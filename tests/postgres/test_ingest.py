"""Ingest into PostgreSQL gives the hub that ingest into DuckDB gives; loads are atomic and idempotent."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import HUB, SECRET, GeneratedPair
from hm_backends import PostgresServer

from healthmesh.cdm import HubDatabase, cdm_tables, connect
from healthmesh.ingest import ingest_bundle, ingest_paths, to_postgres

pytestmark = pytest.mark.postgres

# Everything a load writes, by key; cdm_source carries the load date only.
CONTENT = {
    "person": "person_id",
    "measurement": "measurement_id",
    "observation_period": "observation_period_id",
    "visit_occurrence": "visit_occurrence_id",
    "condition_occurrence": "condition_occurrence_id",
    "death": "person_id",
}


def _content(db: HubDatabase, table: str, key: str) -> pd.DataFrame:
    columns = ", ".join(f.name for f in cdm_tables()[table])
    return db.df(f"SELECT {columns} FROM {table} ORDER BY {key}")


def _snapshot(db: HubDatabase) -> dict[str, pd.DataFrame]:
    return {table: _content(db, table, key) for table, key in CONTENT.items()}


def _assert_same(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> None:
    for table in CONTENT:
        pd.testing.assert_frame_equal(left[table], right[table], obj=table)


def test_postgres_holds_the_rows_duckdb_holds(generated_pair: GeneratedPair) -> None:
    with generated_pair.open("duckdb") as duck, generated_pair.open("postgres") as pg:
        counts = duck.table_counts()
        assert counts["person"] == 300 and counts["measurement"] > 1000
        assert pg.table_counts() == counts
        _assert_same(_snapshot(pg), _snapshot(duck))
        assert pg.scalar("SELECT cdm_source_abbreviation FROM cdm_source") == HUB
    duck_report, pg_report = generated_pair.reports["duckdb"], generated_pair.reports["postgres"]
    assert pg_report.by_type == duck_report.by_type  # type: ignore[attr-defined]
    assert pg_report.database.startswith("postgresql://")  # type: ignore[attr-defined]


def test_a_failed_load_leaves_postgres_unchanged_and_running_it_again_repairs_it(
    generated_pair: GeneratedPair, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres_server.fresh_hub_url()
    try:
        with connect(url) as pg:
            # The load dies after every row was upserted, just before COMMIT.
            def die(*args: object, **kwargs: object) -> None:
                raise KeyboardInterrupt("killed")

            monkeypatch.setattr(to_postgres, "rebuild_derived", die)
            with pytest.raises(KeyboardInterrupt):
                ingest_paths(pg, [generated_pair.ndjson], HUB, SECRET)
            assert pg.scalar("SELECT count(*) FROM person") == 0
            assert pg.scalar("SELECT count(*) FROM measurement") == 0
            monkeypatch.undo()
            ingest_paths(pg, [generated_pair.ndjson], HUB, SECRET)
            with generated_pair.open("postgres") as clean:
                expected = _snapshot(clean)
            _assert_same(_snapshot(pg), expected)
            ingest_paths(pg, [generated_pair.ndjson], HUB, SECRET)  # the same files again: no change
            _assert_same(_snapshot(pg), expected)
    finally:
        postgres_server.drop(url.rsplit("/", 1)[1])


def _patient_bundle(ndjson: Path) -> dict:
    patient = json.loads((sorted(ndjson.glob("Patient*.ndjson"))[0]).open().readline())
    reference = f'"Patient/{patient["id"]}"'
    entries = [patient]
    for path in sorted(ndjson.glob("*.ndjson")):
        if not path.name.startswith("Patient"):
            entries += [json.loads(line) for line in path.open() if reference in line]
    return {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": r} for r in entries]}


@pytest.mark.parametrize("backend_db", ["duckdb", pytest.param("postgres")], indirect=True)
def test_a_bundle_lands_whole_and_a_bad_one_leaves_nothing(
    generated_pair: GeneratedPair, backend_db: HubDatabase
) -> None:
    bundle = _patient_bundle(generated_pair.ndjson)
    report = ingest_bundle(backend_db, json.dumps(bundle), HUB, SECRET)
    assert report.committed and report.rejected == 0
    before = backend_db.table_counts()
    assert before["person"] == 1 and before["visit_occurrence"] > 0 and before["observation_period"] == 1
    bad = _patient_bundle(generated_pair.ndjson)
    bad["entry"][0]["resource"]["id"] = "someone-new"
    bad["entry"][-1]["resource"]["effectiveDateTime"] = "not-a-date"
    bad["entry"][-1]["resource"].pop("onsetDateTime", None)
    bad["entry"][-1]["resource"].pop("authoredOn", None)
    report = ingest_bundle(backend_db, json.dumps(bad), HUB, SECRET)
    assert not report.committed and report.rejected >= 1
    assert backend_db.table_counts() == before


@pytest.mark.parametrize("backend_db", ["duckdb", "postgres"], indirect=True)
def test_a_later_bundle_may_refer_to_a_patient_of_an_earlier_load(
    generated_pair: GeneratedPair, backend_db: HubDatabase
) -> None:
    whole = _patient_bundle(generated_pair.ndjson)
    patient_only = {**whole, "entry": whole["entry"][:1]}
    records = {**whole, "entry": whole["entry"][1:]}
    assert ingest_bundle(backend_db, json.dumps(patient_only), HUB, SECRET).committed
    report = ingest_bundle(backend_db, json.dumps(records), HUB, SECRET)
    assert report.committed and report.rejected == 0
    counts = backend_db.table_counts()
    assert counts["person"] == 1 and counts["visit_occurrence"] > 0
    # the visits of the second load hang on the person of the first
    assert (
        backend_db.scalar("SELECT count(*) FROM visit_occurrence v JOIN person p USING (person_id)")
        == counts["visit_occurrence"]
    )
    assert backend_db.scalar("SELECT count(*) FROM measurement WHERE visit_occurrence_id IS NOT NULL") > 0
