"""DQD v2.8's checks: a planted violation fails the check at each level, removing it passes; DQD's
not-applicable rules; DQD's result JSON layout; the released document carries no small count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from healthmesh.privacy.release import Release
from healthmesh.quality import run_quality
from healthmesh.quality.dqd import DEPRECATED, DqdResult, check_types, dqd_checks
from healthmesh.quality.report import QualityReport

RELEASE = Release(b"quality-test-release-key-0123456", 5)

# DQD's CheckResults columns (recordResult + evaluateThresholds + calculateNotApplicableStatus).
DQD_RESULT_KEYS = {
    "numViolatedRows",
    "pctViolatedRows",
    "numDenominatorRows",
    "executionTime",
    "queryText",
    "checkName",
    "checkLevel",
    "checkDescription",
    "cdmTableName",
    "cdmFieldName",
    "conceptId",
    "unitConceptId",
    "sqlFile",
    "category",
    "subcategory",
    "context",
    "warning",
    "error",
    "checkId",
    "failed",
    "passed",
    "isError",
    "notApplicable",
    "notApplicableReason",
    "thresholdValue",
    "notesValue",
}
DQD_OVERVIEW_KEYS = {
    "countTotal",
    "countPassed",
    "countErrorFailed",
    "countThresholdFailed",
    "countOverallFailed",
    "percentPassed",
    "percentFailed",
    "countTotalPlausibility",
    "countTotalConformance",
    "countTotalCompleteness",
    "countFailedPlausibility",
    "countFailedConformance",
    "countFailedCompleteness",
    "countPassedPlausibility",
    "countPassedConformance",
    "countPassedCompleteness",
}


def _by_id(report: QualityReport) -> dict[str, DqdResult]:
    return {r.spec.check_id: r for r in report.dqd}


def _verdict(db, check_id: str) -> DqdResult:
    return _by_id(run_quality(db))[check_id]


def test_dqd_check_list_is_dqd_284s() -> None:
    specs = dqd_checks()
    assert len(specs) == 2374  # what DQD 2.8.4 runs on a v5.4 CDM with its default settings
    assert len({s.check_id for s in specs}) == len(specs)
    assert {s.name for s in specs} == set(check_types())  # all 27 types, the 3 deprecated included
    assert len(set(check_types()) - set(DEPRECATED)) == 24
    assert not {s.table for s in specs} & {"CONCEPT", "CONCEPT_ANCESTOR", "VOCABULARY"}


def test_table_level_observation_period_overlap(clean_cdm) -> None:
    check_id = "table_measureobservationperiodoverlap_observation_period"
    assert _verdict(clean_cdm, check_id).status == "PASS"
    clean_cdm.execute(  # back to back with person 1's period: DQD counts it as an overlap
        "INSERT INTO observation_period SELECT 1001, 1, observation_period_end_date + 1,"
        " observation_period_end_date + 30, 32817 FROM observation_period WHERE person_id = 1"
    )
    planted = _verdict(clean_cdm, check_id)
    assert (planted.status, planted.violating, planted.denominator) == ("FAIL", 1, 30)
    clean_cdm.execute("DELETE FROM observation_period WHERE observation_period_id = 1001")
    assert _verdict(clean_cdm, check_id).status == "PASS"


def test_field_level_foreign_key(clean_cdm) -> None:
    check_id = "field_isforeignkey_condition_occurrence_visit_occurrence_id"
    assert _verdict(clean_cdm, check_id).status == "PASS"
    clean_cdm.execute(
        "UPDATE condition_occurrence SET visit_occurrence_id = 999999 WHERE condition_occurrence_id = 1000"
    )
    planted = _verdict(clean_cdm, check_id)
    assert (planted.status, planted.violating, planted.spec.threshold) == ("FAIL", 1, 0.0)
    clean_cdm.execute(
        "UPDATE condition_occurrence SET visit_occurrence_id = 1000 WHERE condition_occurrence_id = 1000"
    )
    assert _verdict(clean_cdm, check_id).status == "PASS"


def test_field_level_threshold_is_dqds(clean_cdm) -> None:
    """plausibleBeforeDeath: threshold 1%: one late record of 3 deaths' records is far above it."""
    check_id = "field_plausiblebeforedeath_observation_observation_date"
    assert _verdict(clean_cdm, check_id).status == "PASS"
    clean_cdm.execute(
        "INSERT INTO observation (observation_id, person_id, observation_concept_id, observation_date,"
        " observation_type_concept_id) SELECT 77, person_id, 43054909, death_date + 61, 32817 FROM death LIMIT 1"
    )
    planted = _verdict(clean_cdm, check_id)
    assert planted.status == "FAIL" and planted.violating == 1
    clean_cdm.execute(
        "UPDATE observation SET observation_date = observation_date - 2 WHERE observation_id = 77"
    )
    assert _verdict(clean_cdm, check_id).status == "PASS"  # 59 days after death is within DQD's 60


def test_concept_level_plausible_units(clean_cdm) -> None:
    check_id = "concept_plausibleunitconceptids_measurement_measurement_concept_id_3004249"
    # No unit source value anywhere: DQD's denominator is empty, the concept "is missing".
    assert _verdict(clean_cdm, check_id).status == "NOT_APPLICABLE"
    clean_cdm.execute(
        "UPDATE measurement SET unit_source_value = 'mm[Hg]' WHERE measurement_concept_id = 3004249"
    )
    assert _verdict(clean_cdm, check_id).status == "PASS"
    clean_cdm.execute(  # 10 of 90 systolic pressures in percent: 11% > DQD's 5%
        "UPDATE measurement SET unit_concept_id = 8554 WHERE measurement_id IN (SELECT measurement_id"
        " FROM measurement WHERE measurement_concept_id = 3004249 ORDER BY measurement_id LIMIT 10)"
    )
    planted = _verdict(clean_cdm, check_id)
    assert (planted.status, planted.violating, planted.denominator) == ("FAIL", 10, 90)
    clean_cdm.execute("UPDATE measurement SET unit_concept_id = 8876 WHERE measurement_concept_id = 3004249")
    assert _verdict(clean_cdm, check_id).status == "PASS"


def test_not_applicable_follows_dqds_rules(clean_cdm) -> None:
    clean_cdm.execute("DELETE FROM drug_exposure")
    clean_cdm.execute("ALTER TABLE observation DROP COLUMN qualifier_source_value")
    report = run_quality(clean_cdm)
    results = _by_id(report)
    empty = [
        r
        for r in report.dqd
        if r.spec.table == "DRUG_EXPOSURE"
        and r.spec.name not in ("cdmTable", "cdmField", "measurePersonCompleteness")
    ]
    assert empty and {r.status for r in empty} == {"NOT_APPLICABLE"}
    assert {r.not_applicable_reason for r in empty} == {"Table DRUG_EXPOSURE is empty."}
    # measurePersonCompleteness of an empty table is a real failure in DQD, not "not applicable"
    assert results["table_measurepersoncompleteness_drug_exposure"].status == "FAIL"
    missing = results["field_cdmfield_observation_qualifier_source_value"]
    assert missing.status == "FAIL"
    gone = results["field_measurevaluecompleteness_observation_qualifier_source_value"]
    assert (gone.status, gone.not_applicable_reason) == (
        "NOT_APPLICABLE",
        "Field OBSERVATION.QUALIFIER_SOURCE_VALUE does not exist.",
    )
    never = results["field_isrequired_note_note_id"]  # NOTE is empty in the sample
    assert never.status == "NOT_APPLICABLE"
    unpopulated = results["field_fkdomain_visit_occurrence_admitted_from_concept_id"]
    assert (
        unpopulated.not_applicable_reason
        == "Field VISIT_OCCURRENCE.ADMITTED_FROM_CONCEPT_ID is not populated."
    )
    assert not [r for r in report.dqd if r.status == "ERROR"]


def test_dqd_result_file_has_dqds_layout(clean_cdm, tmp_path: Path) -> None:
    run_quality(clean_cdm, tmp_path / "out", release=RELEASE)
    assert not (tmp_path / "out" / "dqd_results.json").exists()  # the exact file only where asked
    report = run_quality(clean_cdm, dqd_file=tmp_path / "dqd.json")
    document = json.loads((tmp_path / "dqd.json").read_text())
    assert list(document) == [
        "startTimestamp",
        "endTimestamp",
        "executionTime",
        "CheckResults",
        "Metadata",
        "Overview",
    ]
    assert len(document["CheckResults"]) == 2374
    assert all(set(r) == DQD_RESULT_KEYS for r in document["CheckResults"])
    assert DQD_OVERVIEW_KEYS <= set(document["Overview"])
    assert document["Overview"]["countTotal"] == 2374
    assert document["Metadata"][0]["DQD_VERSION"] == "2.8.4"
    one = next(r for r in document["CheckResults"] if r["checkId"] == "field_isprimarykey_person_person_id")
    assert (one["checkLevel"], one["cdmTableName"], one["cdmFieldName"], one["category"]) == (
        "FIELD",
        "PERSON",
        "PERSON_ID",
        "Conformance",
    )
    assert one["checkDescription"].startswith("The number and percent of records that have a duplicate value")
    assert clean_cdm.rows(one["queryText"])[0] == (0, 30)  # the stated SQL reproduces the figures
    for r in document["CheckResults"]:
        assert r["failed"] + r["passed"] + r["isError"] + r["notApplicable"] == 1
    assert sum(r["failed"] for r in document["CheckResults"]) == len(
        [r for r in report.dqd if r.status == "FAIL"]
    )


def test_batched_counts_equal_each_checks_own_query(clean_cdm) -> None:
    clean_cdm.execute(
        "UPDATE measurement SET unit_source_value = 'x', unit_concept_id = 8554 WHERE measurement_id % 7 = 0"
    )
    report = run_quality(clean_cdm)
    counted = [
        r for r in report.dqd if r.violating is not None and r.spec.name not in ("cdmTable", "cdmField")
    ]
    for r in counted[::5]:
        assert tuple(clean_cdm.rows(r.sql)[0]) == (r.violating, r.denominator), r.spec.check_id


def test_released_document_holds_dqd_verdicts_without_small_counts(clean_cdm, tmp_path: Path) -> None:
    report = run_quality(clean_cdm, tmp_path, release=RELEASE)
    document = json.loads((tmp_path / "quality.json").read_text())
    released = document["dqd"]["checks"]
    assert [c["status"] for c in released] == [r.status for r in report.dqd]
    for c in released:
        for key in ("violating_rows", "denominator"):
            assert c[key] is None or c[key] == 0 or c[key] >= RELEASE.min_count
    # the same denominator (all rows of PERSON) shows one value wherever it appears
    person_rows = {
        c["denominator"] for c in released if c["cdmTableName"] == "PERSON" and c["checkName"] == "isRequired"
    }
    assert len(person_rows) == 1
    assert "OHDSI Data Quality Dashboard" in (tmp_path / "quality.html").read_text()


@pytest.mark.parametrize(
    ("threshold", "violating", "denominator", "failed"),
    [
        (None, 1, 1000, True),
        (0.0, 1, 1000, True),
        (0.0, 0, 1000, False),
        (5.0, 50, 1000, False),
        (5.0, 51, 1000, True),
    ],
)
def test_threshold_rule_is_dqds(
    threshold: float | None, violating: int, denominator: int, failed: bool
) -> None:
    spec = next(s for s in dqd_checks() if s.name == "isRequired")
    from dataclasses import replace

    result = DqdResult(replace(spec, threshold=threshold), "", violating, denominator)
    assert result.threshold_failed() is failed


# Faults of many kinds, so that the batched counts are compared where they are not all 0.
FAULTS = (
    "UPDATE measurement SET unit_source_value = 'x', unit_concept_id = 8554 WHERE measurement_id % 7 = 0",
    "UPDATE measurement SET value_as_number = NULL WHERE measurement_id % 3 = 0",
    "UPDATE measurement SET measurement_date = DATE '2199-01-01' WHERE measurement_id % 19 = 0",
    "UPDATE measurement SET visit_occurrence_id = 987654321 WHERE measurement_id % 23 = 0",
    "UPDATE measurement SET measurement_concept_id = 0 WHERE measurement_id % 29 = 0",
    "INSERT INTO measurement SELECT * FROM measurement WHERE measurement_id % 31 = 0",  # duplicated keys
    "UPDATE visit_occurrence SET visit_occurrence_id = NULL WHERE visit_occurrence_id % 37 = 0",
    "UPDATE condition_occurrence SET condition_concept_id = 0 WHERE condition_occurrence_id % 5 = 0",
    "UPDATE condition_occurrence SET condition_concept_id = 999999999 WHERE condition_occurrence_id % 11 = 0",
    "UPDATE condition_occurrence SET condition_start_date = DATE '1900-01-01' WHERE condition_occurrence_id % 13 = 0",
    "UPDATE condition_occurrence SET condition_end_date = condition_start_date - 3"
    " WHERE condition_occurrence_id % 17 = 0",
    "UPDATE visit_occurrence SET visit_end_date = visit_start_date - 2 WHERE visit_occurrence_id % 29 = 0",
    "UPDATE person SET gender_concept_id = 0, year_of_birth = 2150 WHERE person_id % 9 = 0",
    "INSERT INTO death (person_id, death_date) SELECT person_id, DATE '2001-01-01' FROM person WHERE person_id % 4 = 0",
    "INSERT INTO observation_period SELECT observation_period_id + 100000, person_id, observation_period_start_date,"
    " observation_period_end_date, period_type_concept_id FROM observation_period WHERE person_id % 6 = 0",
)


def test_batched_counts_equal_every_checks_own_query_on_a_faulty_cdm(clean_cdm) -> None:
    """Every counted check, ours and DQD's: the batched count is what the check's own SQL gives."""
    for statement in FAULTS:
        clean_cdm.execute(statement)
    report = run_quality(clean_cdm)
    own = [(r.sql, r.violating, r.denominator, r.spec.check_id) for r in report.dqd if r.error is None]
    own += [(r.sql, r.violating_rows, r.denominator, r.check) for r in report.results if r.error is None]
    own = [o for o in own if not o[0].startswith("SELECT count(*) = 0 FROM information_schema")]
    assert len(own) > 2500
    assert sum(1 for o in own if o[1]) > 100  # the faults show: many checks count violations
    for sql, violating, denominator, name in own:
        assert tuple(clean_cdm.rows(sql)[0]) == (violating, denominator), (name, sql)
