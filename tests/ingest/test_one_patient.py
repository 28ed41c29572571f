"""The in-memory mapping of one patient's Bundle gives the CDM facts the database mapping stores."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from healthmesh.cdm import HubDatabase, create_hub
from healthmesh.ingest import ingest_bundle
from healthmesh.ingest.one_patient import BundleMapper, NeedsDatabase, PatientRecords

KEY = b"one-patient-test-key-0123456789abcdef"

_TABLES = {
    "condition_occurrence": ("condition_concept_id", "condition_start_date", "NULL", "NULL"),
    "drug_exposure": ("drug_concept_id", "drug_exposure_start_date", "NULL", "NULL"),
    "procedure_occurrence": ("procedure_concept_id", "procedure_date", "NULL", "NULL"),
    "device_exposure": ("device_concept_id", "device_exposure_start_date", "NULL", "NULL"),
    "measurement": ("measurement_concept_id", "measurement_date", "value_as_concept_id", "value_as_number"),
    "observation": ("observation_concept_id", "observation_date", "value_as_concept_id", "value_as_number"),
}


def _reference(bundle: dict[str, Any]) -> tuple[HubDatabase, PatientRecords]:
    """The patient as the database mapping stores it, read back into the same shape."""
    db = create_hub(":memory:")
    report = ingest_bundle(db, json.dumps(bundle), hub="test", secret_key=KEY)
    assert report.committed, report.rejections[:3]
    (gender, year), *_ = db.rows("SELECT gender_concept_id, year_of_birth FROM person")
    stored = PatientRecords(gender_concept_id=gender, year_of_birth=year)
    for table, (concept, day, value_concept, value) in _TABLES.items():
        rows = db.rows(f"SELECT {concept}, {day}, {value_concept}, {value} FROM {table}")
        if rows:
            stored.events[table] = [tuple(r) for r in rows]  # type: ignore[misc]
    stored.visits = [
        tuple(r)
        for r in db.rows("SELECT visit_concept_id, visit_start_date, visit_end_date FROM visit_occurrence")
    ]  # type: ignore[misc]
    stored.death_date = db.scalar("SELECT min(death_date) FROM death")
    return db, stored


def _same(mapped: PatientRecords, stored: PatientRecords, db: HubDatabase) -> None:
    assert (mapped.gender_concept_id, mapped.year_of_birth) == (
        stored.gender_concept_id,
        stored.year_of_birth,
    )
    assert set(mapped.events) == set(stored.events)
    for table, rows in stored.events.items():
        assert Counter(mapped.events[table]) == Counter(rows), table
    assert Counter(mapped.visits) == Counter(stored.visits)
    assert mapped.last_day == db.scalar("SELECT observation_period_end_date FROM observation_period")


def _patient_bundles(folder: Path, count: int) -> list[dict[str, Any]]:
    bundles = []
    for path in sorted(folder.glob("*.json")):
        bundle = json.loads(path.read_text())
        if any(e["resource"]["resourceType"] == "Patient" for e in bundle.get("entry", [])):
            bundles.append(bundle)
        if len(bundles) == count:
            break
    return bundles


def test_synthea_patients_map_in_memory_as_the_database_stores_them(synthea_bundles: Path) -> None:
    bundles = _patient_bundles(synthea_bundles, 12)
    assert len(bundles) == 12
    mapper = BundleMapper(create_hub(":memory:"))
    for bundle in bundles:
        db, stored = _reference(bundle)
        _same(mapper.map(bundle), stored, db)
        assert sum(len(rows) for rows in stored.events.values()) > 20  # real patients, not empty ones
        db.close()


def test_generated_patients_map_in_memory_as_the_database_stores_them(tmp_path: Path) -> None:
    from healthmesh.ingest.synth import generate_population
    from tests.risk.bundles import patient_bundle

    generate_population("gwangju", 12, 5, tmp_path)
    mapper = BundleMapper(create_hub(":memory:"))
    for index in range(12):
        _, bundle = patient_bundle(tmp_path, index)
        db, stored = _reference(bundle)
        _same(mapper.map(bundle), stored, db)
        db.close()


@pytest.fixture(scope="module")
def one_bundle(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from healthmesh.ingest.synth import generate_population
    from tests.risk.bundles import patient_bundle

    folder = tmp_path_factory.mktemp("one")
    generate_population("busan", 3, 2, folder)
    return patient_bundle(folder, 0)[1]


def _observation(bundle: dict[str, Any]) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")


@pytest.mark.parametrize(
    "change",
    [
        "date that is not a date",
        "value given as text",
        "resource sent twice",
        "record of another patient",
        "unknown resource type",
        "conditional subject reference",
    ],
)
def test_what_only_the_database_decides_goes_to_it(one_bundle: dict[str, Any], change: str) -> None:
    bundle = copy.deepcopy(one_bundle)
    observation = _observation(bundle)
    if change == "date that is not a date":
        observation["effectiveDateTime"] = "2020-13-45"
    elif change == "value given as text":
        observation["valueQuantity"] = {"value": "12.5"}
    elif change == "resource sent twice":
        bundle["entry"].append(copy.deepcopy(bundle["entry"][-1]))
    elif change == "record of another patient":
        observation["subject"] = {"reference": "Patient/someone-else"}
    elif change == "unknown resource type":
        bundle["entry"].append({"resource": {"resourceType": "Spaceship", "id": "x"}})
    else:
        observation["subject"] = {"reference": "Patient?identifier=http://example.org|123"}
    with pytest.raises(NeedsDatabase):
        BundleMapper(create_hub(":memory:")).map(bundle)


def test_skipped_types_and_partial_dates_stay_in_memory(one_bundle: dict[str, Any]) -> None:
    bundle = copy.deepcopy(one_bundle)
    bundle["entry"].append({"resource": {"resourceType": "Claim", "id": "c1"}})
    _observation(bundle)["effectiveDateTime"] = "2019-03"
    db, stored = _reference(bundle)
    _same(BundleMapper(db).map(bundle), stored, db)


def test_home_visits_dispensings_and_the_new_meaning_rules_agree_with_the_database() -> None:
    """Visit classes and MedicationDispense stay in memory and agree; what only the database
    decides (a negated record, a Specimen, a record dated by its Encounter, a boolean value) goes to it."""
    patient = {"resourceType": "Patient", "id": "p", "gender": "male", "birthDate": "1960-02-03"}
    subject = {"reference": "Patient/p"}
    rxnorm = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197361"}]}
    entries = [
        patient,
        {"resourceType": "Encounter", "id": "home", "class": {"code": "HH"}, "subject": subject,
         "period": {"start": "2024-01-02T10:00:00Z"}},
        {"resourceType": "MedicationDispense", "id": "d", "status": "completed", "subject": subject,
         "medicationCodeableConcept": rxnorm, "whenHandedOver": "2024-01-03"},
    ]  # fmt: skip
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in entries]}
    db, stored = _reference(bundle)
    mapped = BundleMapper(db).map(bundle)
    _same(mapped, stored, db)
    assert mapped.visits[0][0] == 581476
    observation = {"resourceType": "Observation", "id": "o", "status": "final", "subject": subject,
                   "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]},
                   "effectiveDateTime": "2024-01-03"}  # fmt: skip
    for extra in (
        {**observation, "status": "entered-in-error"},
        {**observation, "valueBoolean": True},
        {"resourceType": "Specimen", "id": "s", "subject": subject, "collection": {"collectedDateTime": "2024-01-03"},
         "type": {"coding": [{"system": "http://snomed.info/sct", "code": "119297000"}]}},
        {"resourceType": "Condition", "id": "c", "subject": subject, "encounter": {"reference": "Encounter/home"},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}},
    ):  # fmt: skip
        with pytest.raises(NeedsDatabase):
            BundleMapper(db).map({**bundle, "entry": [*bundle["entry"], {"resource": extra}]})
