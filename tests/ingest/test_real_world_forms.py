"""FHIR R4 as hospitals send it: no record aborts a load, file order does not decide, references
resolve across the whole load in every form, Bundles of every type and Bundles inside Bundles."""

from __future__ import annotations

import json
import os
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
        (folder / name).write_text(document if isinstance(document, str) else json.dumps(document))
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
