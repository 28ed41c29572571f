"""The shared Synthea data (205 FHIR R4 bundles, 27-patient CSV export) loads completely and safely."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import duckdb


def _input_resources(folder: Path) -> list[dict]:
    resources = []
    for path in sorted(folder.glob("*.json")):
        bundle = json.loads(path.read_text())
        resources.extend(entry["resource"] for entry in bundle["entry"])
    return resources


def test_bundles_load_with_every_record_accounted_for(synthea_bundles: Path, synthea_hub) -> None:
    db_path, report = synthea_hub
    resources = _input_resources(synthea_bundles)
    by_type = Counter(r["resourceType"] for r in resources)
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    deceased = {r["id"] for r in patients if "deceasedDateTime" in r or r.get("deceasedBoolean")}

    assert report["totals"]["records"] == len(resources)
    totals = report["totals"]
    assert totals["loaded"] + totals["skipped"] + totals["rejected"] == totals["records"]
    assert totals["rejected"] == 0
    for resource_type, count in by_type.items():
        assert report["by_type"][resource_type]["records"] == count, resource_type
    assert report["by_type"]["Claim"]["skipped"] == by_type["Claim"]

    with duckdb.connect(str(db_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM person").fetchone()[0] == 205
        assert con.execute("SELECT count(*) FROM visit_occurrence").fetchone()[0] == by_type["Encounter"]
        assert con.execute("SELECT count(*) FROM death").fetchone()[0] == len(deceased)
        assert con.execute("SELECT count(*) FROM observation_period").fetchone()[0] == 205


def test_clinical_records_get_the_standard_concept_the_vocabulary_has(synthea_hub) -> None:
    db_path, report = synthea_hub
    with duckdb.connect(str(db_path), read_only=True) as con:
        # Records whose source concept is in the bundled vocabulary with a standard mapping.
        mappable, mapped = con.execute(
            """
            WITH maps AS (SELECT DISTINCT source_concept_id FROM hm_concept_map WHERE concept_id > 0),
            records AS (
                SELECT condition_source_concept_id AS s, condition_concept_id AS c FROM condition_occurrence
                UNION ALL SELECT drug_source_concept_id, drug_concept_id FROM drug_exposure
                UNION ALL SELECT procedure_source_concept_id, procedure_concept_id FROM procedure_occurrence
                UNION ALL SELECT measurement_source_concept_id, measurement_concept_id FROM measurement
                UNION ALL SELECT observation_source_concept_id, observation_concept_id FROM observation
            )
            SELECT count(*), count(*) FILTER (WHERE c > 0) FROM records WHERE s IN (SELECT source_concept_id FROM maps)
            """
        ).fetchone()
    assert mappable > 40_000
    assert mapped / mappable >= 0.95
    assert report["mapped_share"]["Observation"] >= 0.95
    assert report["mapped_share"]["DiagnosticReport"] == 1.0


def test_no_direct_identifier_of_the_input_is_stored(synthea_bundles: Path, synthea_hub) -> None:
    names: set[str] = set()  # matched as whole words (a town "Greenfield" is not the name "Green")
    exact: set[str] = set()  # matched anywhere: SSN, driver's licence, passport, phone, street lines
    cities: set[str] = set()  # kept by design; a surname that is also a town ("Lee", "Adams") is not a leak
    for resource in _input_resources(synthea_bundles):
        if resource["resourceType"] not in ("Patient", "Practitioner"):
            continue
        for name in resource.get("name", []):
            names.update(p for p in [name.get("family"), *name.get("given", [])] if p and len(p) > 2)
        for identifier in resource.get("identifier", []):
            if identifier.get("type", {}).get("text") in (
                "Social Security Number",
                "Driver's License",
                "Passport Number",
            ):
                exact.add(identifier["value"])
        for address in resource.get("address", []):
            exact.update(address.get("line", []))
            cities.update(address.get("city", "").split())
        for telecom in resource.get("telecom", []):
            exact.add(telecom["value"])
    names -= cities
    assert len(names) > 300 and len(exact) > 500
    with duckdb.connect(str(db_path := synthea_hub[0]), read_only=True) as con:
        columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE data_type = 'VARCHAR'"
            " AND table_name NOT IN ('concept', 'concept_synonym', 'concept_class', 'vocabulary', 'domain',"
            " 'relationship', 'concept_relationship', 'hm_concept_map', 'hm_code_system')"
        ).fetchall()
        con.execute("CREATE TEMP TABLE exact (needle VARCHAR)")
        con.executemany("INSERT INTO exact VALUES (?)", [(n,) for n in exact])
        con.execute("CREATE TEMP TABLE names (needle VARCHAR)")
        con.executemany("INSERT INTO names VALUES (?)", [(n,) for n in names])
        hits = []
        for table, column in columns:
            hits += con.execute(
                f'SELECT DISTINCT ?, needle FROM "{table}" JOIN exact ON contains("{column}", needle)',
                [f"{table}.{column}"],
            ).fetchall()
            hits += con.execute(
                f"SELECT DISTINCT ?, needle FROM (SELECT unnest(regexp_split_to_array(\"{column}\", '[^A-Za-z]+')) AS w"
                f' FROM "{table}") JOIN names ON w = needle',
                [f"{table}.{column}"],
            ).fetchall()
    assert db_path.exists()
    assert hits == [], sorted(set(hits))


def test_the_identifier_scan_finds_nothing_and_no_clinical_value_was_taken_for_one(synthea_hub) -> None:
    from healthmesh.cdm import connect
    from healthmesh.privacy.scan import scan_database

    db_path, report = synthea_hub
    assert report["totals"]["redacted"] == 0  # Synthea's codes, units and values are not identifiers
    with connect(db_path, read_only=True) as db:
        assert scan_database(db).total == 0


def test_person_keeps_birth_year_and_month_and_a_keyed_pseudonym(synthea_hub) -> None:
    db_path, _ = synthea_hub
    with duckdb.connect(str(db_path), read_only=True) as con:
        day, datetime_, pseudonym_length = con.execute(
            "SELECT max(day_of_birth), max(birth_datetime), min(length(person_source_value)) FROM person"
        ).fetchone()
        zips = con.execute("SELECT max(length(zip)) FROM location").fetchone()[0]
    assert day is None and datetime_ is None
    assert pseudonym_length == 32
    assert zips == 3


def test_synthea_csv_export_loads_without_rejection(synthea_csv: Path, tmp_path: Path, run_cli) -> None:
    db = tmp_path / "csv.duckdb"
    result = run_cli("ingest", str(synthea_csv), "--db", str(db), "--hub", "massachusetts", "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads(db.with_name(db.name + ".ingest-report.json").read_text())
    assert report["totals"]["rejected"] == 0 and report["totals"]["redacted"] == 0
    with duckdb.connect(str(db), read_only=True) as con:
        persons = con.execute("SELECT count(*) FROM person").fetchone()[0]
        visits = con.execute("SELECT count(*) FROM visit_occurrence").fetchone()[0]
    patients_rows = sum(1 for _ in (synthea_csv / "patients.csv").open()) - 1
    encounter_rows = sum(1 for _ in (synthea_csv / "encounters.csv").open()) - 1
    assert persons == patients_rows
    assert visits == encounter_rows
