"""Every check type: the clean CDM passes, one injected violation makes exactly that check fail."""

from __future__ import annotations

import pytest

from healthmesh.quality import CHECK_TYPES, run_quality

# check type -> (SQL that injects one violation, the (check, table, field) that must fail, label part)
FAULTS: dict[str, tuple[list[str], set[tuple[str, str, str | None]], str | None]] = {
    "cdmTable": (["DROP TABLE note_nlp"], {("cdmTable", "note_nlp", None)}, None),
    "cdmField": (
        ["ALTER TABLE condition_occurrence DROP COLUMN stop_reason"],
        {("cdmField", "condition_occurrence", "stop_reason")},
        None,
    ),
    "cdmDatatype": (
        [
            "ALTER TABLE drug_exposure ALTER refills TYPE VARCHAR",
            "UPDATE drug_exposure SET refills = 'two' WHERE drug_exposure_id = 1001",
        ],
        {("cdmDatatype", "drug_exposure", "refills")},
        None,
    ),
    "isRequired": (
        [
            "ALTER TABLE condition_occurrence ALTER condition_type_concept_id DROP NOT NULL",
            "UPDATE condition_occurrence SET condition_type_concept_id = NULL WHERE condition_occurrence_id = 1000",
        ],
        {("isRequired", "condition_occurrence", "condition_type_concept_id")},
        None,
    ),
    "isPrimaryKey": (
        ["INSERT INTO observation SELECT * FROM observation WHERE observation_id = 1000"],
        {("isPrimaryKey", "observation", "observation_id")},
        None,
    ),
    "isForeignKey": (
        ["UPDATE condition_occurrence SET visit_occurrence_id = 999999 WHERE condition_occurrence_id = 1000"],
        {("isForeignKey", "condition_occurrence", "visit_occurrence_id")},
        None,
    ),
    "validConceptId": (
        [
            "UPDATE condition_occurrence SET condition_concept_id = 1999999999 WHERE condition_occurrence_id = 1000"
        ],
        {("validConceptId", "condition_occurrence", "condition_concept_id")},
        None,
    ),
    "fkDomain": (  # systolic blood pressure is a Measurement, not a Condition
        [
            "UPDATE condition_occurrence SET condition_concept_id = 3004249 WHERE condition_occurrence_id = 1000"
        ],
        {("fkDomain", "condition_occurrence", "condition_concept_id")},
        None,
    ),
    "isStandardValidConcept": (  # LOINC 33914-3 (eGFR, MDRD) is not standard in the bundled vocabulary
        ["UPDATE measurement SET measurement_concept_id = 3030354 WHERE measurement_id = 10001"],
        {("isStandardValidConcept", "measurement", "measurement_concept_id")},
        None,
    ),
    "standardConceptRecordCompleteness": (  # 7 of 120 visits unmapped: 5.8% > 5%
        [
            "UPDATE visit_occurrence SET visit_concept_id = 0 WHERE person_id <= 7 AND visit_occurrence_id % 1000 = 1"
        ],
        {("standardConceptRecordCompleteness", "visit_occurrence", "visit_concept_id")},
        None,
    ),
    "unmappedBySourceVocabulary": (  # two LOINC-coded conditions left unmapped: 100% of LOINC, 3% overall
        [
            "UPDATE condition_occurrence SET condition_concept_id = 0, condition_source_concept_id = 3004249"
            " WHERE condition_occurrence_id IN (1000, 2000)"
        ],
        {("unmappedBySourceVocabulary", "condition_occurrence", "condition_concept_id")},
        "LOINC",
    ),
    "measurePersonCompleteness": (
        [
            "INSERT INTO person (person_id, gender_concept_id, year_of_birth, race_concept_id,"
            " ethnicity_concept_id, location_id) VALUES (31, 8507, 1980, 8515, 38003564, 1)"
        ],
        {("measurePersonCompleteness", "observation_period", "person_id")},
        None,
    ),
    "measureValueCompleteness": (  # 80 of 360 values missing: 22% > 20%
        [
            "UPDATE measurement SET value_as_number = NULL WHERE measurement_id IN"
            " (SELECT measurement_id FROM measurement ORDER BY measurement_id LIMIT 80)"
        ],
        {("measureValueCompleteness", "measurement", "value_as_number")},
        None,
    ),
    "plausibleAfterBirth": (  # observed from January, born in June
        [
            "INSERT INTO person (person_id, gender_concept_id, year_of_birth, month_of_birth, race_concept_id,"
            " ethnicity_concept_id, location_id) VALUES (31, 8532, 2020, 6, 8515, 38003564, 1)",
            "INSERT INTO observation_period VALUES (31, 31, DATE '2020-01-01', DATE '2024-12-31', 32817)",
        ],
        {("plausibleAfterBirth", "observation_period", "observation_period_start_date")},
        None,
    ),
    "plausibleBeforeDeath": (  # person 10 died 2024-12-31; a record in March 2025
        [
            "UPDATE observation_period SET observation_period_end_date = DATE '2025-06-30' WHERE person_id = 10",
            "INSERT INTO observation (observation_id, person_id, observation_concept_id, observation_date,"
            " observation_type_concept_id) VALUES (77, 10, 43054909, DATE '2025-03-01', 32817)",
        ],
        {("plausibleBeforeDeath", "observation", "observation_date")},
        None,
    ),
    "withinObservationPeriod": (
        [
            "INSERT INTO observation (observation_id, person_id, observation_concept_id, observation_date,"
            " observation_type_concept_id) VALUES (77, 1, 43054909, DATE '2014-06-01', 32817)"
        ],
        {("withinObservationPeriod", "observation", "observation_date")},
        None,
    ),
    "withinVisitDates": (
        [
            "UPDATE condition_occurrence SET condition_start_date = condition_start_date + 60"
            " WHERE condition_occurrence_id = 1000"
        ],
        {("withinVisitDates", "condition_occurrence", "condition_start_date")},
        None,
    ),
    "plausibleStartBeforeEnd": (
        [
            "UPDATE drug_exposure SET drug_exposure_end_date = drug_exposure_start_date - 5"
            " WHERE drug_exposure_id = 1001"
        ],
        {("plausibleStartBeforeEnd", "drug_exposure", "drug_exposure_start_date")},
        None,
    ),
    "plausibleNotInFuture": (
        ["UPDATE visit_occurrence SET visit_end_date = DATE '2099-01-01' WHERE visit_occurrence_id = 1000"],
        {("plausibleNotInFuture", "visit_occurrence", "visit_end_date")},
        None,
    ),
    "plausibleValueLow": (  # systolic blood pressure of 5 mmHg
        ["UPDATE measurement SET value_as_number = 5 WHERE measurement_id = 10001"],
        {("plausibleValueLow", "measurement", "value_as_number")},
        "8480-6",
    ),
    "plausibleValueHigh": (
        ["UPDATE person SET month_of_birth = 13 WHERE person_id = 1"],
        {("plausibleValueHigh", "person", "month_of_birth")},
        None,
    ),
    "plausibleGender": (  # a pregnancy recorded for a man (person 1)
        [
            "INSERT INTO condition_occurrence (condition_occurrence_id, person_id, condition_concept_id,"
            " condition_start_date, condition_type_concept_id, visit_occurrence_id, condition_source_concept_id)"
            " SELECT 77, 1, 4217975, visit_start_date, 32817, 1000, 4217975 FROM visit_occurrence"
            " WHERE visit_occurrence_id = 1000"
        ],
        {("plausibleGender", "condition_occurrence", "condition_concept_id")},
        "72892002",
    ),
    "observationPeriodOverlap": (
        ["INSERT INTO observation_period VALUES (1001, 1, DATE '2020-01-01', DATE '2021-12-31', 32817)"],
        {("observationPeriodOverlap", "observation_period", "observation_period_start_date")},
        None,
    ),
}


def test_every_check_type_has_a_fault() -> None:
    assert set(FAULTS) == set(CHECK_TYPES)
    assert len(CHECK_TYPES) >= 20


def test_clean_cdm_passes_every_check(clean_cdm) -> None:
    report = run_quality(clean_cdm)
    assert [r for r in report.results if r.failed] == []
    assert {r.check for r in report.results} == set(CHECK_TYPES)
    sbp = [r for r in report.results if r.check == "plausibleValueLow" and "8480-6" in (r.label or "")]
    assert [r.denominator for r in sbp] == [
        clean_cdm.scalar("SELECT count(*) FROM measurement WHERE measurement_concept_id = 3004249")
    ]


@pytest.mark.parametrize("check_type", sorted(FAULTS))
def test_injected_fault_fails_exactly_its_check(clean_cdm, check_type: str) -> None:
    statements, expected, label = FAULTS[check_type]
    for sql in statements:
        clean_cdm.execute(sql)
    report = run_quality(clean_cdm)
    failed = [r for r in report.results if r.failed]
    assert {(r.check, r.table, r.field) for r in failed} == expected, [
        (r.check, r.table, r.field, r.label, r.error) for r in failed
    ]
    assert all(r.status == "fail" for r in failed)
    assert all(r.violating_rows and r.violating_rows > 0 for r in failed)
    if label:
        assert all(label in (r.label or "") for r in failed)
