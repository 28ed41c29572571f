"""What FHIR records mean in the CDM: negated and erroneous records are not facts, value[x] in every
form the CDM keeps, MedicationDispense and Specimen, dates from the Encounter, visit classes, code
systems (MIMIC, Korean, a hub's own), US Core race and ethnicity; and the shared real-world sources
load with every record accounted for."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "postgres"))
import hm_backends  # noqa: E402

from healthmesh.cdm import create_hub  # noqa: E402
from healthmesh.cdm.database import HubDatabase  # noqa: E402
from healthmesh.ingest import ingest_bundle, ingest_paths  # noqa: E402
from healthmesh.ingest.codesystems import code_systems  # noqa: E402
from healthmesh.ingest.report import IngestReport  # noqa: E402

# A fresh hub on DuckDB and on PostgreSQL (tests/postgres' fixtures).
backend_db = hm_backends.backend_db
duckdb_hub_template = hm_backends.duckdb_hub_template
postgres_server = hm_backends.postgres_server

KEY = b"fhir-meaning-test-key-0123456789abcdef"
SHARED_FHIR = Path(os.environ.get("HEALTHMESH_SHARED_DATA", "/work/shared/data")) / "fhir"
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-05-01"}
SUBJECT = {"reference": "Patient/p1"}
ENCOUNTER = {
    "resourceType": "Encounter",
    "id": "e1",
    "status": "finished",
    "class": {"code": "AMB"},
    "subject": SUBJECT,
    "period": {"start": "2024-03-02T10:00:00Z", "end": "2024-03-02T11:00:00Z"},
}
LOINC_HDL = {"coding": [{"system": "http://loinc.org", "code": "2085-9"}]}


def _bundle(*resources: dict[str, Any]) -> str:
    entries = [{"resource": r} for r in (PATIENT, *resources)]
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries})


def _load(tmp_path: Path, *resources: dict[str, Any]) -> tuple[HubDatabase, IngestReport]:
    """A Bundle file loaded as a folder (a posted Bundle is all or nothing; a file load keeps the rest)."""
    (tmp_path / "in").mkdir(parents=True)
    (tmp_path / "in" / "bundle.json").write_text(_bundle(*resources))
    db = create_hub(str(tmp_path / "hub.duckdb"))
    return db, ingest_paths(db, [tmp_path / "in"], "test", KEY)


def _count(db: HubDatabase, table: str, where: str = "true") -> int:
    return int(db.scalar(f"SELECT count(*) FROM {table} WHERE {where}"))


def _skips(report: IngestReport) -> dict[str, int]:
    return {s["reason"]: s["count"] for s in report.skipped}


# --- status and negation ---------------------------------------------------------------------

NEGATED = [
    ({"resourceType": "Immunization", "id": "i1", "status": "not-done", "patient": SUBJECT,
      "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]},
      "occurrenceDateTime": "2024-01-05"}, "drug_exposure", "Immunization status not-done: not a fact"),
    ({"resourceType": "MedicationStatement", "id": "m1", "status": "not-taken", "subject": SUBJECT,
      "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                "code": "197361"}]},
      "effectiveDateTime": "2024-01-05"}, "drug_exposure", "MedicationStatement status not-taken: not a fact"),
    ({"resourceType": "MedicationRequest", "id": "m2", "status": "active", "doNotPerform": True,
      "intent": "order", "subject": SUBJECT,
      "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                "code": "197361"}]},
      "authoredOn": "2024-01-05"}, "drug_exposure", "MedicationRequest doNotPerform: not a fact"),
    ({"resourceType": "Procedure", "id": "pr1", "status": "not-done", "subject": SUBJECT,
      "code": {"coding": [{"system": "http://snomed.info/sct", "code": "80146002"}]},
      "performedDateTime": "2024-01-05"}, "procedure_occurrence", "Procedure status not-done: not a fact"),
    ({"resourceType": "Observation", "id": "o1", "status": "cancelled", "subject": SUBJECT, "code": LOINC_HDL,
      "effectiveDateTime": "2024-01-05", "valueQuantity": {"value": 40, "code": "mg/dL"}},
     "measurement", "Observation status cancelled: not a fact"),
    ({"resourceType": "Observation", "id": "o2", "status": "entered-in-error", "subject": SUBJECT,
      "code": LOINC_HDL, "effectiveDateTime": "2024-01-05", "valueQuantity": {"value": 40}},
     "measurement", "Observation status entered-in-error: not a fact"),
    ({"resourceType": "Condition", "id": "c1", "subject": SUBJECT,
      "verificationStatus": {"coding": [{"code": "refuted"}]},
      "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
      "onsetDateTime": "2024-01-05"}, "condition_occurrence", "Condition status refuted: not a fact"),
    ({"resourceType": "Condition", "id": "c2", "subject": SUBJECT,
      "verificationStatus": {"coding": [{"code": "entered-in-error"}]},
      "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
      "onsetDateTime": "2024-01-05"}, "condition_occurrence", "Condition status entered-in-error: not a fact"),
    ({"resourceType": "AllergyIntolerance", "id": "a1", "patient": SUBJECT,
      "verificationStatus": {"coding": [{"code": "refuted"}]},
      "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91936005"}]},
      "recordedDate": "2024-01-05"}, "observation", "AllergyIntolerance status refuted: not a fact"),
]  # fmt: skip


@pytest.mark.parametrize(("resource", "table", "reason"), NEGATED, ids=[r[0]["id"] for r in NEGATED])
def test_a_negated_or_erroneous_record_is_skipped_with_its_reason_not_loaded_as_a_fact(
    tmp_path: Path, resource: dict[str, Any], table: str, reason: str
) -> None:
    db, report = _load(tmp_path, resource)
    assert _count(db, table) == 0
    assert _skips(report) == {reason: 1}
    assert report.by_type[resource["resourceType"]]["skipped"] == 1
    # the same record without its negation is a fact
    positive = {
        k: v for k, v in resource.items() if k not in ("status", "doNotPerform", "verificationStatus")
    }
    db2, report2 = _load(tmp_path / "positive", positive)
    assert report2.by_type[resource["resourceType"]]["loaded"] == 1
    assert _count(db2, table) == 1


def test_a_record_later_marked_entered_in_error_leaves_the_cdm(tmp_path: Path) -> None:
    observation = {"resourceType": "Observation", "id": "o1", "status": "final", "subject": SUBJECT,
                   "code": LOINC_HDL, "effectiveDateTime": "2024-01-05", "valueQuantity": {"value": 40}}  # fmt: skip
    db, _ = _load(tmp_path, observation)
    assert _count(db, "measurement") == 1
    ingest_bundle(db, _bundle({**observation, "status": "entered-in-error"}), hub="test", secret_key=KEY)
    assert _count(db, "measurement") == 0


# --- value[x] ----------------------------------------------------------------------------------


def _observation(rid: str, **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": rid, "status": "final", "subject": SUBJECT,
            "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]},
            "category": [{"coding": [{"code": "social-history"}]}],
            "effectiveDateTime": "2024-01-05", **value}  # fmt: skip


def test_value_x_lands_in_every_form_the_cdm_has_a_place_for(tmp_path: Path) -> None:
    db, report = _load(
        tmp_path,
        _observation("yes", valueBoolean=True),
        _observation("no", valueBoolean=False),
        _observation("int", valueInteger=7),
        _observation("range", valueRange={"low": {"value": 2}, "high": {"value": 5}}),
        _observation("ratio", valueRatio={"numerator": {"value": 1}, "denominator": {"value": 128}}),
        _observation("when", valueDateTime="2023-12-24"),
        _observation("text", valueString="never smoked"),
    )
    assert report.rejected == 0
    rows = dict(
        db.rows(
            "SELECT observation_source_value || ':' || coalesce(value_as_concept_id::VARCHAR, '-') || ':' || "
            "coalesce(value_as_number::VARCHAR, '-') || ':' || coalesce(value_as_string, '-'), true "
            "FROM observation"
        )
    )
    assert set(rows) == {
        "72166-2:4188539:-:-",  # true: Yes
        "72166-2:4188540:-:-",  # false: No
        "72166-2:-:7.0:-",
        "72166-2:-:-:2-5",
        "72166-2:-:-:1/128",
        "72166-2:-:-:2023-12-24",
        "72166-2:-:-:never smoked",
    }
    # every value concept is in CONCEPT (DQD's foreign-key check)
    assert not db.scalar(
        "SELECT count(*) FROM observation WHERE value_as_concept_id NOT IN (SELECT concept_id FROM concept)"
    )


def test_a_value_without_a_unit_has_unit_concept_null_and_an_unknown_unit_zero(tmp_path: Path) -> None:
    lab = {"resourceType": "Observation", "status": "final", "subject": SUBJECT, "code": LOINC_HDL,
           "category": [{"coding": [{"code": "laboratory"}]}], "effectiveDateTime": "2024-01-05"}  # fmt: skip
    db, _ = _load(
        tmp_path,
        {**lab, "id": "none", "valueQuantity": {"value": 1.5}},
        {**lab, "id": "odd", "valueQuantity": {"value": 1.5, "unit": "widgets per fortnight"}},
    )
    units = dict(db.rows("SELECT unit_source_value, unit_concept_id FROM measurement"))
    assert units == {None: None, "widgets per fortnight": 0}


# --- MedicationDispense and Specimen --------------------------------------------------------------


def test_medication_dispense_is_a_drug_exposure_of_the_dispensing_type_and_specimen_a_specimen(
    tmp_path: Path,
) -> None:
    db, report = _load(
        tmp_path,
        {"resourceType": "MedicationDispense", "id": "d1", "status": "completed", "subject": SUBJECT,
         "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                   "code": "197361"}]},
         "whenHandedOver": "2024-02-01T09:00:00Z"},
        {"resourceType": "Specimen", "id": "s1", "subject": SUBJECT,
         "type": {"coding": [{"system": "http://snomed.info/sct", "code": "119297000"}]},
         "collection": {"collectedDateTime": "2024-02-01T08:00:00Z"}},
    )  # fmt: skip
    assert report.rejected == 0
    assert db.rows("SELECT drug_type_concept_id, drug_exposure_start_date::VARCHAR FROM drug_exposure") == [
        (32825, "2024-02-01")
    ]
    assert db.rows("SELECT specimen_source_value, specimen_date::VARCHAR FROM specimen") == [
        ("119297000", "2024-02-01")
    ]
    assert db.scalar("SELECT count(*) FROM concept WHERE concept_id = 32825") == 1


def test_a_medication_reference_takes_the_contained_medications_code(tmp_path: Path) -> None:
    db, report = _load(
        tmp_path,
        {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
         "subject": SUBJECT, "authoredOn": "2024-01-05", "medicationReference": {"reference": "#med"},
         "contained": [{"resourceType": "Medication", "id": "med",
                        "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                             "code": "197361"}]}}]},
    )  # fmt: skip
    assert report.rejected == 0
    assert db.scalar("SELECT drug_source_value FROM drug_exposure") == "197361"


# --- dates and visits ----------------------------------------------------------------------------


def test_a_condition_without_a_date_takes_its_encounters_and_without_either_is_rejected(
    tmp_path: Path,
) -> None:
    condition = {"resourceType": "Condition", "subject": SUBJECT,
                 "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}}  # fmt: skip
    db, report = _load(
        tmp_path,
        ENCOUNTER,
        {**condition, "id": "with-visit", "encounter": {"reference": "Encounter/e1"}},
        {**condition, "id": "unknown-visit", "encounter": {"reference": "Encounter/nowhere"}},
        {**condition, "id": "no-visit"},
    )
    assert db.rows("SELECT condition_start_date::VARCHAR FROM condition_occurrence") == [("2024-03-02",)]
    reasons = sorted(r["reason"] for r in report.rejections)
    assert reasons == [
        "Condition without a date",
        "Condition without a date, and its Encounter is not one of this load or of the hub",
    ]


def test_a_devices_manufacture_date_is_not_an_exposure(tmp_path: Path) -> None:
    db, report = _load(
        tmp_path,
        {"resourceType": "Device", "id": "dev", "patient": SUBJECT, "manufactureDate": "2001-01-01",
         "type": {"coding": [{"system": "http://snomed.info/sct", "code": "72506001"}]}},
    )  # fmt: skip
    assert _count(db, "device_exposure") == 0
    assert [r["reason"] for r in report.rejections] == ["Device without a date"]


def test_encounter_classes_map_to_their_visit_concepts(tmp_path: Path) -> None:
    encounters = [
        {**ENCOUNTER, "id": code, "class": {"code": code}} for code in ("HH", "IMP", "EMER", "AMB", "VR")
    ]
    db, _ = _load(tmp_path, *encounters)
    visits = dict(db.rows("SELECT visit_source_value, visit_concept_id FROM visit_occurrence"))
    assert visits == {"HH": 581476, "IMP": 9201, "EMER": 9203, "AMB": 9202, "VR": 9202}
    assert not db.scalar(
        "SELECT count(*) FROM visit_occurrence WHERE visit_concept_id NOT IN (SELECT concept_id FROM concept)"
    )


# --- code systems, race and ethnicity ---------------------------------------------------------


def test_mimic_and_korean_code_system_urls_name_their_vocabularies() -> None:
    systems = code_systems()
    assert systems["http://mimic.mit.edu/fhir/mimic/CodeSystem/mimic-diagnosis-icd10"] == "ICD10CM"
    assert systems["http://mimic.mit.edu/fhir/mimic/CodeSystem/mimic-diagnosis-icd9"] == "ICD9CM"
    assert systems["http://www.hl7korea.or.kr/CodeSystem/kostat-kcd-8"] == "KCD7"
    assert systems["http://www.hl7korea.or.kr/CodeSystem/hira-edi-procedure"] == "EDI"


def test_a_hub_file_adds_a_code_system_and_a_bad_one_gets_a_one_line_reason(tmp_path: Path) -> None:
    (tmp_path / "codesystems.csv").write_text("system,vocabulary_id\nhttp://hospital.example/dx,SNOMED\n")
    db = create_hub(str(tmp_path / "hub.duckdb"))
    code = db.rows("SELECT concept_code FROM concept WHERE vocabulary_id = 'SNOMED' AND domain_id = 'Condition' "
                   "AND standard_concept = 'S' LIMIT 1")[0][0]  # fmt: skip
    condition = {"resourceType": "Condition", "id": "c", "subject": SUBJECT, "onsetDateTime": "2024-01-01",
                 "code": {"coding": [{"system": "http://hospital.example/dx", "code": code}]}}  # fmt: skip
    ingest_bundle(db, _bundle(condition), hub="test", secret_key=KEY)
    assert db.scalar("SELECT condition_concept_id FROM condition_occurrence") > 0
    (tmp_path / "codesystems.csv").write_text("system\nhttp://hospital.example/dx\n")
    from healthmesh.errors import CDMError

    with pytest.raises(CDMError, match="system and vocabulary_id"):
        code_systems(tmp_path / "hub.duckdb")


def test_us_core_race_and_ethnicity_are_found_by_their_urls(tmp_path: Path) -> None:
    us_core = "http://hl7.org/fhir/us/core/StructureDefinition/"
    patient = {**PATIENT, "extension": [
        {"url": us_core + "us-core-birthsex", "valueCode": "F"},
        {"url": us_core + "us-core-ethnicity", "extension": [
            {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2135-2"}}]},
        {"url": us_core + "us-core-race", "extension": [
            {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3"}}]},
    ]}  # fmt: skip
    db = create_hub(str(tmp_path / "hub.duckdb"))
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient}]}
    ingest_bundle(db, json.dumps(bundle), hub="test", secret_key=KEY)
    assert db.rows("SELECT race_concept_id, ethnicity_concept_id FROM person") == [(8527, 38003563)]


# --- the shared real-world sources ---------------------------------------------------------------


@pytest.mark.parametrize(
    "source", ["us-core-examples", "kr-core-examples", "mimic-iv-demo-50", "bulk-10-patients"]
)
def test_a_shared_real_world_source_loads_with_every_record_accounted_for(
    tmp_path: Path, source: str
) -> None:
    folder = SHARED_FHIR / source
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent (set HEALTHMESH_SHARED_DATA to the shared data folder)")
    db = create_hub(str(tmp_path / "hub.duckdb"))
    report = ingest_paths(db, [folder], "test", KEY)
    totals = report.to_dict()["totals"]
    assert totals["loaded"] + totals["skipped"] + totals["rejected"] == totals["records"]
    assert totals["loaded"] > 0
    # a record is rejected only for what its source lacks: a date, a code, its Patient, a resourceType
    lacks = re.compile(
        r"^(\w+ without a (date|code)|subject \S+ is not a Patient of this load or of the hub|no resourceType)$"
    )
    assert [r["reason"] for r in report.rejections if not lacks.match(r["reason"])] == []


def test_mimic_icd_codes_written_without_their_dot_find_their_concept_in_both_paths(tmp_path: Path) -> None:
    from healthmesh.ingest.one_patient import BundleMapper

    db = create_hub(str(tmp_path / "hub.duckdb"))
    # the ICD rows an Athena export would bring (the bundled vocabulary has no ICD)
    db.execute(
        "INSERT INTO hm_concept_map BY NAME SELECT * REPLACE ('ICD10CM' AS vocabulary_id, 'E11.9' AS concept_code) "
        "FROM hm_concept_map WHERE concept_id = 201826 LIMIT 1"
    )
    db.execute(
        "INSERT INTO hm_concept_map BY NAME SELECT * REPLACE ('ICD9CM' AS vocabulary_id, 'E849.7' AS concept_code) "
        "FROM hm_concept_map WHERE concept_id = 201826 LIMIT 1"
    )
    mimic = "http://mimic.mit.edu/fhir/mimic/CodeSystem/mimic-diagnosis-icd"
    conditions = [
        {"resourceType": "Condition", "id": rid, "subject": SUBJECT, "onsetDateTime": "2024-01-01",
         "code": {"coding": [{"system": mimic + version, "code": code}]}}
        for rid, version, code in (("icd10", "10", "E119"), ("icd9", "9", "E8497"))
    ]  # fmt: skip
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "b.json").write_text(_bundle(*conditions))
    ingest_paths(db, [tmp_path / "in"], "test", KEY)
    assert dict(db.rows("SELECT condition_source_value, condition_concept_id FROM condition_occurrence")) == {
        "E119": 201826,
        "E8497": 201826,
    }
    twin = BundleMapper(db).map(json.loads(_bundle(*conditions)))
    assert [concept for concept, *_ in twin.events["condition_occurrence"]] == [201826, 201826]


def test_both_engines_store_the_same_meaning(backend_db: HubDatabase) -> None:
    """A posted Bundle (all or nothing) with a dispensing, a specimen, a negated Immunization and a
    Condition dated by its Encounter lands alike on DuckDB and PostgreSQL."""
    bundle = _bundle(
        ENCOUNTER,
        {"resourceType": "Condition", "id": "c", "subject": SUBJECT, "encounter": {"reference": "Encounter/e1"},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}},
        {"resourceType": "MedicationDispense", "id": "d", "status": "completed", "subject": SUBJECT,
         "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                   "code": "197361"}]}, "whenHandedOver": "2024-02-01"},
        {"resourceType": "Specimen", "id": "s", "subject": SUBJECT, "collection": {"collectedDateTime": "2024-02-01"},
         "type": {"coding": [{"system": "http://snomed.info/sct", "code": "119297000"}]}},
        {"resourceType": "Immunization", "id": "i", "status": "not-done", "patient": SUBJECT,
         "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]},
         "occurrenceDateTime": "2024-01-05"},
    )  # fmt: skip
    report = ingest_bundle(backend_db, bundle, "test", KEY)
    assert report.rejected == 0
    assert _skips(report) == {"Immunization status not-done: not a fact": 1}
    assert [
        tuple(map(str, r)) for r in backend_db.rows("SELECT condition_start_date FROM condition_occurrence")
    ] == [("2024-03-02",)]
    assert backend_db.rows("SELECT drug_type_concept_id FROM drug_exposure") == [(32825,)]
    assert backend_db.scalar("SELECT count(*) FROM specimen") == 1


def test_an_identifier_typed_as_an_ethnicity_is_not_stored(tmp_path: Path) -> None:
    from tests.ingest.test_identifier_redaction import RRN

    us_core = "http://hl7.org/fhir/us/core/StructureDefinition/"
    patient = {**PATIENT, "extension": [{"url": us_core + "us-core-ethnicity", "extension": [
        {"url": "ombCategory", "valueCoding": {"code": RRN}}]}]}  # fmt: skip
    db = create_hub(str(tmp_path / "hub.duckdb"))
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient}]}
    report = ingest_bundle(db, json.dumps(bundle), hub="test", secret_key=KEY)
    assert db.rows("SELECT ethnicity_concept_id, ethnicity_source_value FROM person") == [(0, None)]
    assert report.redactions == {"Patient": {"ethnicity": {"KR_RRN": 1}}}
