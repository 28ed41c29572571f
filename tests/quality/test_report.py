"""The report a user reads: JSON keys, HTML, disclosure of small counts, thresholds file, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from healthmesh.cdm import connect
from healthmesh.cli import app
from healthmesh.errors import PrivacyError, QualityError
from healthmesh.privacy import COUNT_KEYS
from healthmesh.privacy.release import Release
from healthmesh.quality import CHECK_TYPES, load_thresholds, run_quality

RELEASE = Release(b"quality-test-release-key-0123456", 5)

REQUIRED_KEYS = {
    "check",
    "category",
    "table",
    "field",
    "violating_rows",
    "denominator",
    "threshold",
    "failed",
    "sql",
}


def _counts(document: object) -> list[int]:
    """Every count in a JSON document (values under the disclosure module's count keys)."""
    found: list[int] = []
    if isinstance(document, dict):
        for key, value in document.items():
            if key in COUNT_KEYS and isinstance(value, int):
                found.append(value)
            else:
                found += _counts(value)
    elif isinstance(document, list):
        for item in document:
            found += _counts(item)
    return found


def test_quality_json_lists_checks_with_their_sql(clean_cdm, tmp_path: Path) -> None:
    run_quality(clean_cdm, tmp_path, release=RELEASE)
    document = json.loads((tmp_path / "quality.json").read_text())
    assert document["checks"] and all(REQUIRED_KEYS <= set(c) for c in document["checks"])
    assert {c["category"] for c in document["checks"]} == {"conformance", "completeness", "plausibility"}
    assert "<table>" in (tmp_path / "quality.html").read_text()
    one = next(c for c in document["checks"] if c["check"] == "isPrimaryKey" and c["table"] == "person")
    assert clean_cdm.rows(one["sql"])[0] == (0, 30)  # the stated SQL reproduces the figures


def test_small_violation_counts_are_withheld_but_verdict_kept(clean_cdm, tmp_path: Path) -> None:
    clean_cdm.execute("UPDATE measurement SET value_as_number = 5 WHERE measurement_id = 10001")
    report = run_quality(clean_cdm, tmp_path, release=RELEASE)
    exact = next(r for r in report.results if r.check == "plausibleValueLow" and "8480-6" in (r.label or ""))
    assert exact.violating_rows == 1 and exact.failed
    document = json.loads((tmp_path / "quality.json").read_text())
    released = next(
        c for c in document["checks"] if c["check"] == "plausibleValueLow" and "8480-6" in (c["label"] or "")
    )
    assert released["violating_rows"] is None and released["failed"] is True
    assert not [n for n in _counts(document) if 0 < n < document["min_count"]]


def test_thresholds_file_is_validated(tmp_path: Path) -> None:
    default = load_thresholds()
    assert set(default.defaults) == set(CHECK_TYPES)
    broken = json.loads(json.dumps(default.model_dump()))
    broken["defaults"]["isPrimaryKey"] = 150
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(QualityError, match="percentage"):
        load_thresholds(path)
    del broken["defaults"]["isPrimaryKey"]
    path.write_text(json.dumps(broken))
    with pytest.raises(QualityError, match="isPrimaryKey"):
        load_thresholds(path)


def test_a_broken_column_reports_errors_instead_of_crashing(clean_cdm) -> None:
    clean_cdm.execute("ALTER TABLE person DROP COLUMN month_of_birth")
    report = run_quality(clean_cdm)
    failed = {(r.check, r.table, r.field) for r in report.failed()}
    assert ("cdmField", "person", "month_of_birth") in failed
    assert any(r.status == "error" for r in report.results)


def test_checks_run_on_the_shared_synthea_cdm(eunomia_file: Path, tmp_path: Path) -> None:
    with connect(eunomia_file, read_only=True) as db:
        report = run_quality(db, tmp_path, release=RELEASE)
    summary = report.summary()
    assert summary["check_types"] == len(CHECK_TYPES)
    assert summary["checks_run"] > 1000
    # The bundled vocabulary subset lacks the type concepts that ETL-Synthea used.
    failed = {(r.check, r.table, r.field) for r in report.failed()}
    assert ("validConceptId", "measurement", "measurement_type_concept_id") in failed
    assert not [n for n in _counts(json.loads((tmp_path / "quality.json").read_text())) if 0 < n < 5]


def test_cli_quality_writes_reports(clean_cdm_file: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["quality", "--db", str(clean_cdm_file), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "0 failed" in result.output
    assert (tmp_path / "quality.json").exists() and (tmp_path / "quality.html").exists()


def test_checks_run_on_a_generated_hub(generated_hub: Path, tmp_path: Path) -> None:
    with connect(generated_hub, read_only=True) as db:
        report = run_quality(db, tmp_path, release=RELEASE)
        persons = db.scalar("SELECT count(*) FROM person")
    assert {r.check for r in report.results} == set(CHECK_TYPES)
    assert not [r for r in report.results if r.status == "error"]
    completeness = next(
        r for r in report.results if r.check == "measurePersonCompleteness" and r.table == "visit_occurrence"
    )
    assert completeness.denominator == persons
    plausibility = [r for r in report.results if r.category == "plausibility" and r.denominator]
    assert plausibility and not [r for r in plausibility if r.failed]  # generated values are plausible
    assert not [n for n in _counts(json.loads((tmp_path / "quality.json").read_text())) if 0 < n < 5]


def test_released_counts_are_perturbed_and_the_share_follows_them(clean_cdm, tmp_path: Path) -> None:
    with pytest.raises(PrivacyError, match="Release"):
        run_quality(clean_cdm, tmp_path)  # a report is not written without the hub's release path
    report = run_quality(clean_cdm, tmp_path, release=RELEASE)
    document = json.loads((tmp_path / "quality.json").read_text())
    for exact, shown in zip(report.results, document["checks"], strict=True):
        if shown["denominator"] is not None:
            assert abs(shown["denominator"] - exact.denominator) <= RELEASE.max_noise
        if shown["violating_rows"] is not None:
            assert abs(shown["violating_rows"] - exact.violating_rows) <= RELEASE.max_noise
            # the share comes from released counts: it cannot be multiplied back to the exact count
            assert shown["pct_violated"] == round(
                100 * min(1, shown["violating_rows"] / shown["denominator"]), 4
            )
    rows = {(c["table"], c["denominator"]) for c in document["checks"] if c["check"] == "isRequired"}
    persons = [d for table, d in rows if table == "person"]
    assert len(set(persons)) == 1  # the same number of rows shows the same noise in every check
