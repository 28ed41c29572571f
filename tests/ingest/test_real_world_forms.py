"""FHIR R4 as hospitals send it: no record aborts a load, file order does not decide, references
resolve across the whole load in every form, Bundles of every type and Bundles inside Bundles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from healthmesh.cdm import create_hub
from healthmesh.ingest import ingest_paths
from healthmesh.ingest.report import IngestReport

KEY = b"real-world-forms-key-0123456789abcdef"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"


def patient(pid: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1960-04-02", **extra}


def condition(cid: str, subject: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": subject},
        "code": {"coding": [{"system": SNOMED, "code": "44054006"}]},
        "onsetDateTime": "2020-03-01",
        **extra,
    }


def observation(oid: str, subject: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "subject": {"reference": subject},
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "effectiveDateTime": "2021-05-06T10:00:00Z",
        "valueQuantity": {"value": 72, "unit": "/min", "code": "/min"},
        **extra,
    }


def bundle(kind: str, resources: list[dict[str, Any]], full_urls: list[str] | None = None) -> dict[str, Any]:
    entries = []
    for i, resource in enumerate(resources):
        entry: dict[str, Any] = {"resource": resource}
        if full_urls:
            entry["fullUrl"] = full_urls[i]
        if kind in ("transaction", "batch"):
            entry["request"] = {"method": "POST", "url": resource["resourceType"]}
        entries.append(entry)
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def load(tmp_path: Path, files: dict[str, Any]) -> tuple[IngestReport, Any]:
    folder = tmp_path / "in"
    folder.mkdir()
    for name, document in files.items():
        (folder / name).write_text(document if isinstance(document, str) else json.dumps(document, indent=2))
    db = create_hub(str(tmp_path / "hub.duckdb"))
    report = ingest_paths(db, [folder], "gwangju", KEY)
    return report, db


def assert_adds_up(report: IngestReport) -> None:
    for resource_type, row in report.by_type.items():
        assert row["records"] == row["loaded"] + row["skipped"] + row["rejected"], resource_type
    assert report.records == report.loaded + report.skipped_count + report.rejected
    assert len(report.rejections) == report.rejected


def test_a_deceased_patient_without_a_date_does_not_abort_the_load(tmp_path: Path) -> None:
    report, db = load(
        tmp_path,
        {
            "a.json": patient("p1", deceasedBoolean=True),
            "b.json": patient("p2"),
            "c.json": condition("c1", "Patient/p1"),
            "d.json": condition("c2", "Patient/p2"),
        },
    )
    assert report.rejected == 0, report.rejections
    assert db.scalar("SELECT count(*) FROM person") == 2
    assert db.scalar("SELECT count(*) FROM condition_occurrence") == 2
    # dated by the person's last record (death_date is required); the living one has no death row
    assert db.rows("SELECT death_date::VARCHAR FROM death") == [("2020-03-01",)]


def test_one_resource_files_in_any_order_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretty-printed files (their type is not seen before they are read), one file per batch, named
    so that the records come before their Patient and Encounter: all land, each with its visit."""
    monkeypatch.setattr("healthmesh.ingest.load.BUNDLES_PER_BATCH", 1)
    encounter = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/zz-patient"},
        "period": {"start": "2021-05-06T09:00:00Z", "end": "2021-05-06T11:00:00Z"},
    }
    report, db = load(
        tmp_path,
        {
            "a-observation.json": observation(
                "o1", "Patient/zz-patient", encounter={"reference": "Encounter/e1"}
            ),
            "b-condition.json": condition("c1", "Patient/zz-patient"),
            "m-encounter.json": encounter,
            "y-orphan.json": condition("c2", "Patient/nobody"),
            "z-patient.json": patient("zz-patient"),
        },
    )
    assert_adds_up(report)
    assert [(r["id"], r["reason"]) for r in report.rejections] == [
        ("c2", "subject Patient/nobody is not a Patient of this load or of the hub")
    ]
    assert report.loaded == 4
    assert db.scalar("SELECT count(*) FROM condition_occurrence") == 1
    assert db.scalar("SELECT count(*) FROM measurement WHERE visit_occurrence_id IS NOT NULL") == 1
