"""Condition, drug and dose eras on a tiny CDM with known eras, on DuckDB and PostgreSQL."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "postgres"))
import hm_backends  # noqa: E402

from healthmesh.cdm import HubDatabase  # noqa: E402
from healthmesh.cdm.eras import build_eras  # noqa: E402

# Both engines' fixtures (a fresh hub on DuckDB and on PostgreSQL), shared with tests/postgres.
backend_db = hm_backends.backend_db
duckdb_hub_template = hm_backends.duckdb_hub_template
postgres_server = hm_backends.postgres_server

INGREDIENT, DRUG_10MG, DRUG_20MG, OTHER_INGREDIENT = 2100000001, 2100000002, 2100000003, 2100000004
MG = 8576
CONDITION = 201826  # type 2 diabetes, in the bundled vocabulary


def _d(text: str) -> date:
    return date.fromisoformat(text)


def _many(db: HubDatabase, sql: str, rows: list[tuple]) -> None:
    for row in rows:
        db.execute(sql, list(row))


def _tiny_cdm(db: HubDatabase) -> None:
    concepts = [
        (INGREDIENT, "ingredient A", "Ingredient"),
        (DRUG_10MG, "A 10 MG Oral Tablet", "Clinical Drug"),
        (DRUG_20MG, "A 20 MG Oral Tablet", "Clinical Drug"),
        (OTHER_INGREDIENT, "ingredient B", "Ingredient"),
    ]
    _many(
        db,
        "INSERT INTO concept VALUES (?, ?, 'Drug', 'RxNorm', ?, 'S', ?, DATE '1970-01-01', DATE '2099-12-31', NULL)",
        [(cid, name, cls, f"T{cid}") for cid, name, cls in concepts],
    )
    _many(
        db,
        "INSERT INTO concept_ancestor VALUES (?, ?, ?, ?)",
        [
            (INGREDIENT, INGREDIENT, 0, 0),
            (INGREDIENT, DRUG_10MG, 1, 1),
            (INGREDIENT, DRUG_20MG, 1, 1),
            (OTHER_INGREDIENT, OTHER_INGREDIENT, 0, 0),
        ],
    )
    _many(
        db,
        "INSERT INTO drug_strength (drug_concept_id, ingredient_concept_id, amount_value, amount_unit_concept_id,"
        " valid_start_date, valid_end_date) VALUES (?, ?, ?, ?, DATE '1970-01-01', DATE '2099-12-31')",
        [(DRUG_10MG, INGREDIENT, 10.0, MG), (DRUG_20MG, INGREDIENT, 20.0, MG)],
    )
    # Person 1: a condition on 1 Jan (no end: one day), again 31 Jan (within 30 days of 2 Jan), again
    # 2 Apr (61 days after 31 Jan's end: a new era). Concept 0 forms no era.
    conditions = [
        (1, 1, CONDITION, "2020-01-01", None),
        (2, 1, CONDITION, "2020-01-31", "2020-02-01"),
        (3, 1, CONDITION, "2020-04-02", "2020-04-10"),
        (4, 1, 0, "2020-01-05", None),
        (5, 2, CONDITION, "2021-06-01", "2021-12-31"),  # a long record covers a later short one
        (6, 2, CONDITION, "2021-07-01", "2021-07-02"),
        (7, 2, CONDITION, "2022-01-30", "2022-02-05"),  # exactly 30 days after the latest end: joins
    ]
    _many(
        db,
        "INSERT INTO condition_occurrence (condition_occurrence_id, person_id, condition_concept_id,"
        " condition_start_date, condition_end_date, condition_type_concept_id) VALUES (?, ?, ?, ?, ?, 32817)",
        [(i, p, c, _d(s), _d(e) if e else None) for i, p, c, s, e in conditions],
    )
    # Person 1 takes two drugs of one ingredient: 10 mg 1-30 Jan, 20 mg 25 Jan - 10 Feb (overlap),
    # 10 mg 1-11 Mar (19 days after: same era), 10 mg 1 Jun (81 days
    # after: new era). Ingredient B is not reached by any drug here.
    drugs = [
        (1, 1, DRUG_10MG, "2020-01-01", "2020-01-30", None),
        (2, 1, DRUG_20MG, "2020-01-25", "2020-02-10", None),
        (3, 1, DRUG_10MG, "2020-03-01", "2020-03-11", 10),
        (4, 1, DRUG_10MG, "2020-06-01", "2020-06-15", None),
        (5, 1, 0, "2020-01-01", "2020-01-30", None),
    ]
    _many(
        db,
        "INSERT INTO drug_exposure (drug_exposure_id, person_id, drug_concept_id, drug_exposure_start_date,"
        " drug_exposure_end_date, days_supply, drug_type_concept_id) VALUES (?, ?, ?, ?, ?, ?, 32817)",
        [(i, p, c, _d(s), _d(e) if e else None, ds) for i, p, c, s, e, ds in drugs],
    )


def _rows(db: HubDatabase, sql: str) -> list[tuple]:
    return [tuple(r) for r in db.rows(sql)]


def test_eras_follow_ohdsi_rules(backend_db: HubDatabase) -> None:
    db = backend_db
    _tiny_cdm(db)
    counts = build_eras(db)
    assert counts == {"condition_era": 3, "drug_era": 2, "dose_era": 4}
    assert _rows(
        db,
        "SELECT person_id, condition_concept_id, condition_era_start_date, condition_era_end_date,"
        " condition_occurrence_count FROM condition_era ORDER BY person_id, condition_era_start_date",
    ) == [
        (1, CONDITION, _d("2020-01-01"), _d("2020-02-01"), 2),
        (1, CONDITION, _d("2020-04-02"), _d("2020-04-10"), 1),
        (2, CONDITION, _d("2021-06-01"), _d("2022-02-05"), 3),
    ]
    # Era 1: sub-exposure 1 Jan - 10 Feb (40 days) and 1-11 Mar (10 days) in 70 days: 20 gap days.
    assert _rows(
        db,
        "SELECT person_id, drug_concept_id, drug_era_start_date, drug_era_end_date, drug_exposure_count,"
        " gap_days FROM drug_era ORDER BY drug_era_start_date",
    ) == [
        (1, INGREDIENT, _d("2020-01-01"), _d("2020-03-11"), 3, 20),
        (1, INGREDIENT, _d("2020-06-01"), _d("2020-06-15"), 1, 0),
    ]
    assert _rows(
        db,
        "SELECT drug_concept_id, unit_concept_id, dose_value, dose_era_start_date, dose_era_end_date"
        " FROM dose_era ORDER BY dose_value, dose_era_start_date",
    ) == [
        (INGREDIENT, MG, 10.0, _d("2020-01-01"), _d("2020-01-30")),
        (INGREDIENT, MG, 10.0, _d("2020-03-01"), _d("2020-03-11")),  # 31 days after the last 10 mg
        (INGREDIENT, MG, 10.0, _d("2020-06-01"), _d("2020-06-15")),
        (INGREDIENT, MG, 20.0, _d("2020-01-25"), _d("2020-02-10")),
    ]
    ids = _rows(db, "SELECT count(DISTINCT condition_era_id), min(condition_era_id) FROM condition_era")
    assert ids == [(3, 1)]


def test_a_scoped_rebuild_touches_only_its_persons(backend_db: HubDatabase) -> None:
    db = backend_db
    _tiny_cdm(db)
    build_eras(db)
    db.execute("DELETE FROM condition_occurrence WHERE condition_occurrence_id = 3")
    db.execute("CREATE TEMP TABLE changed AS SELECT 1 AS person_id")
    assert build_eras(db, "SELECT person_id FROM changed")["condition_era"] == 2
    eras = _rows(db, "SELECT person_id, condition_era_id FROM condition_era ORDER BY condition_era_id")
    assert [p for p, _ in eras] == [2, 1] and len({i for _, i in eras}) == 2
    build_eras(db)  # idempotent
    assert db.scalar("SELECT count(*) FROM condition_era") == 2
    assert db.scalar("SELECT count(*) FROM drug_era") == 2


@pytest.mark.parametrize("window", [29, 31])
def test_the_persistence_window_is_thirty_days(hub_db: HubDatabase, window: int) -> None:
    _tiny_cdm(hub_db)
    hub_db.execute("DELETE FROM condition_occurrence")
    start = date(2020, 1, 31) if window == 29 else date(2020, 2, 2)
    _many(
        hub_db,
        "INSERT INTO condition_occurrence (condition_occurrence_id, person_id, condition_concept_id,"
        " condition_start_date, condition_end_date, condition_type_concept_id) VALUES (?, 1, ?, ?, ?, 32817)",
        [(1, CONDITION, date(2020, 1, 1), date(2020, 1, 2)), (2, CONDITION, start, start)],
    )
    assert build_eras(hub_db)["condition_era"] == (1 if window == 29 else 2)


def test_condition_eras_match_the_ones_ohdsi_etl_synthea_built(eunomia_file: Path, tmp_path: Path) -> None:
    """Eunomia's CONDITION_ERA was built by OHDSI's ETL-Synthea from the same condition records."""
    import shutil

    from healthmesh.cdm import connect

    copy = tmp_path / "eunomia.duckdb"
    shutil.copyfile(eunomia_file, copy)
    with connect(copy) as db:
        db.execute("CREATE TABLE theirs AS SELECT * EXCLUDE (condition_era_id) FROM condition_era")
        assert db.scalar("SELECT count(*) FROM theirs") > 400
        build_eras(db)
        differences = db.scalar(
            "SELECT count(*) FROM ((SELECT * EXCLUDE (condition_era_id) FROM condition_era EXCEPT ALL"
            " SELECT * FROM theirs) UNION ALL (SELECT * FROM theirs EXCEPT ALL"
            " SELECT * EXCLUDE (condition_era_id) FROM condition_era))"
        )
    assert differences == 0


def _bundle(patient: str, conditions: list[tuple[str, str]]) -> str:
    import json

    entries: list[dict] = [{"resource": {"resourceType": "Patient", "id": patient, "gender": "female",
                                          "birthDate": "1960-05-01"}}]  # fmt: skip
    for rid, day in conditions:
        entries.append(
            {
                "resource": {
                    "resourceType": "Condition",
                    "id": rid,
                    "subject": {"reference": f"Patient/{patient}"},
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
                    "onsetDateTime": day,
                    "abatementDateTime": day,
                }
            }
        )
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries})


def test_ingest_builds_the_eras_and_a_posted_bundle_rebuilds_its_persons(backend_db: HubDatabase) -> None:
    from healthmesh.ingest import ingest_bundle

    db, key = backend_db, b"era-test-secret-0123456789abcdef0123"
    ingest_bundle(db, _bundle("p1", [("c1", "2020-01-01"), ("c2", "2020-01-20")]), "gyeonggi", key)
    ingest_bundle(db, _bundle("p2", [("c3", "2021-01-01")]), "gyeonggi", key)
    assert db.scalar("SELECT count(*) FROM condition_era") == 2
    assert db.scalar("SELECT max(condition_occurrence_count) FROM condition_era") == 2
    ingest_bundle(db, _bundle("p1", [("c4", "2020-06-01")]), "gyeonggi", key)  # over 30 days later
    eras = _rows(
        db, "SELECT condition_concept_id, condition_occurrence_count FROM condition_era ORDER BY 2, 1"
    )
    assert eras == [(CONDITION, 1), (CONDITION, 1), (CONDITION, 2)]
    assert db.scalar("SELECT count(DISTINCT condition_era_id) FROM condition_era") == 3
