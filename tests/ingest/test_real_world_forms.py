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
    folder.mkdir(parents=True)
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


def test_transaction_entries_known_only_by_their_urn_uuid_load(tmp_path: Path) -> None:
    """Resources without ids (the server would assign them), references to their fullUrls; and a
    Patient whose id differs from its fullUrl, referred to by the fullUrl."""
    pat = {k: v for k, v in patient("x").items() if k != "id"}
    enc = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"},
        "period": {"start": "2021-05-06T09:00:00Z"},
    }
    obs = observation("ignored", "urn:uuid:11111111-1111-4111-8111-111111111111")
    del obs["id"]
    obs["encounter"] = {"reference": "urn:uuid:22222222-2222-4222-8222-222222222222"}
    other = patient("hospital-mrn-77")
    cond = condition("c-77", "urn:uuid:44444444-4444-4444-8444-444444444444")
    urls = [f"urn:uuid:{d * 8}-{d * 4}-4{d * 3}-8{d * 3}-{d * 12}" for d in "12345"]
    report, db = load(tmp_path, {"tx.json": bundle("transaction", [pat, enc, obs, other, cond], urls)})
    assert_adds_up(report)
    assert report.rejected == 0, report.rejections
    assert db.scalar("SELECT count(*) FROM person") == 2
    assert db.scalar("SELECT count(*) FROM measurement WHERE visit_occurrence_id IS NOT NULL") == 1
    assert db.scalar("SELECT count(*) FROM condition_occurrence") == 1


def test_absolute_and_versioned_references_resolve(tmp_path: Path) -> None:
    report, db = load(
        tmp_path,
        {
            "c.json": bundle(
                "collection",
                [
                    patient("p9"),
                    condition("c1", "https://fhir.example.org/r4/Patient/p9"),
                    condition("c2", "Patient/p9/_history/3"),
                ],
            )
        },
    )
    assert report.rejected == 0, report.rejections
    assert db.scalar("SELECT count(DISTINCT person_id) FROM condition_occurrence") == 1


def test_batch_requests_are_skipped_and_documents_and_nested_bundles_load(tmp_path: Path) -> None:
    batch = bundle("batch", [patient("b1"), observation("o-b1", "Patient/b1")])
    batch["entry"] += [
        {"request": {"method": "GET", "url": "Patient?name=kim"}},
        {"request": {"method": "DELETE", "url": "Observation/old"}},
    ]
    document = {
        "resourceType": "Bundle",
        "type": "document",
        "entry": [
            {"resource": {"resourceType": "Composition", "id": "comp", "status": "final"}},
            {"resource": patient("d1")},
            {"resource": observation("o-d1", "Patient/d1")},
        ],
    }
    inner = bundle("transaction", [patient("n1"), observation("o-n1", "Patient/n1")])
    outer = bundle("collection", [inner, bundle("searchset", [observation("o-n2", "Patient/n1")])])
    report, db = load(tmp_path, {"batch.json": batch, "document.json": document, "nested.json": outer})
    assert_adds_up(report)
    assert report.rejected == 0, report.rejections
    assert report.by_type["(request only)"]["skipped"] == 2
    assert report.by_type["Observation"]["loaded"] == 4
    assert db.scalar("SELECT count(*) FROM measurement") == 4
    assert "Bundle" not in report.by_type


RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def medication_request(mid: str, subject: str, medication: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": mid,
        "status": "active",
        "intent": "order",
        "subject": {"reference": subject},
        "authoredOn": "2022-01-10",
        **medication,
        **extra,
    }


def test_contained_patients_and_medications_and_medication_references_resolve(tmp_path: Path) -> None:
    newborn_obs = observation(
        "apgar",
        "#newborn",
        contained=[{"resourceType": "Patient", "id": "newborn", "gender": "male", "birthDate": "2023-02-03"}],
    )
    contained_med = medication_request(
        "mr-1",
        "Patient/m1",
        {"medicationReference": {"reference": "#med"}},
        contained=[
            {
                "resourceType": "Medication",
                "id": "med",
                "code": {"coding": [{"system": RXNORM, "code": "197361"}]},
            }
        ],
    )
    medication = {
        "resourceType": "Medication",
        "id": "med-in-bundle",
        "code": {"coding": [{"system": RXNORM, "code": "310798"}]},
    }
    bundled_med = medication_request(
        "mr-2",
        "Patient/m1",
        {"medicationReference": {"reference": "urn:uuid:aaaaaaaa-0000-4000-8000-000000000001"}},
    )
    resources = [patient("m1"), contained_med, medication, bundled_med]
    urls = [f"urn:uuid:aaaaaaaa-0000-4000-8000-00000000000{i}" for i in (0, 9, 1, 2)]
    report, db = load(
        tmp_path,
        {
            "newborn.json": bundle("collection", [newborn_obs]),
            "meds.json": bundle("transaction", resources, urls),
        },
    )
    assert_adds_up(report)
    assert report.rejected == 0, report.rejections
    assert db.scalar("SELECT count(*) FROM person WHERE year_of_birth = 2023") == 1
    assert db.scalar("SELECT count(*) FROM measurement") == 1
    assert sorted(r[0] for r in db.rows("SELECT drug_source_value FROM drug_exposure")) == [
        "197361",
        "310798",
    ]


def _shared_report(run_cli: Any, folder: Path, tmp_path: Path) -> dict[str, Any]:
    """Ingest ``folder`` with the CLI: no traceback, a report written whose counts add up."""
    if not folder.is_dir():
        pytest.skip(f"{folder} not found (set HEALTHMESH_SHARED_DATA)")
    db = tmp_path / "hub.duckdb"
    result = run_cli("ingest", str(folder), "--db", str(db), "--hub", "gwangju", "--quiet")
    assert "Traceback" not in result.stderr
    assert result.returncode in (0, 1), result.stderr  # 1: some records rejected (each with its reason)
    report = json.loads(Path(f"{db}.ingest-report.json").read_text())
    totals = report["totals"]
    assert totals["records"] == totals["loaded"] + totals["skipped"] + totals["rejected"]
    for resource_type, row in report["by_type"].items():
        assert row["records"] == row["loaded"] + row["skipped"] + row["rejected"], resource_type
    reasons = [r["reason"] for r in report["rejections"]]
    assert len(reasons) == totals["rejected"]
    assert not [r for r in reasons if "is not a Patient of this load" in r]  # every reference resolved
    return report


def test_the_us_core_examples_load(shared_data: Path, run_cli: Any, tmp_path: Path) -> None:
    report = _shared_report(run_cli, shared_data / "fhir" / "us-core-examples", tmp_path)
    # coded, contained and referenced Medication (the Medication's file sorts after the request's)
    assert report["by_type"]["MedicationRequest"]["rejected"] == 0
    assert report["by_type"]["Observation"]["rejected"] == 0
    assert report["by_type"]["Patient"]["loaded"] == report["by_type"]["Patient"]["records"]


def test_the_bulk_export_sample_loads(shared_data: Path, run_cli: Any, tmp_path: Path) -> None:
    report = _shared_report(run_cli, shared_data / "fhir" / "bulk-10-patients", tmp_path)
    for resource_type in (
        "Patient",
        "Encounter",
        "Condition",
        "MedicationRequest",
        "Procedure",
        "Immunization",
    ):
        row = report["by_type"][resource_type]
        assert row["loaded"] == row["records"], resource_type


def test_a_rejection_costs_its_record_not_a_second_mapping_of_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bad lines of an NDJSON file are rejected with their line numbers; the file is mapped once."""
    import healthmesh.ingest.load as load_module

    mapped: list[int] = []
    map_stage = load_module.map_stage
    monkeypatch.setattr(load_module, "map_stage", lambda db: mapped.append(1) or map_stage(db))
    lines = [observation(f"o{i}", "Patient/n1") for i in range(1, 41)]
    lines[6]["effectiveDateTime"] = "2021-13-45"
    lines[32]["subject"] = {"reference": "Patient/nobody"}
    report, _ = load(
        tmp_path,
        {
            "Observation.000.ndjson": "\n".join(json.dumps(line) for line in lines) + "\n",
            "Patient.000.ndjson": json.dumps(patient("n1")) + "\n",
        },
    )
    assert_adds_up(report)
    assert [(r["record"], r["id"]) for r in report.rejections] == [(7, "o7"), (33, "o33")]
    assert report.loaded == 39
    assert len(mapped) == 2  # once per file


def test_a_full_url_names_within_its_own_file_only(tmp_path: Path) -> None:
    """One file of a batch gives an entry the fullUrl 'Patient/p1' but the id 'evil': the other
    files' references to Patient/p1 still mean the Patient p1 (as without that file)."""
    own = {"b.json": bundle("collection", [patient("p1"), condition("c1", "Patient/p1")])}
    decoy = bundle("collection", [patient("evil")], ["Patient/p1"])
    clean, clean_db = load(tmp_path / "clean", own)
    report, db = load(tmp_path / "decoy", {"a-decoy.json": decoy, **own})
    assert report.rejected == 0, report.rejections
    owner = "SELECT person_id FROM condition_occurrence"
    assert db.scalar(owner) == clean_db.scalar(owner)


def test_a_posted_bundles_medications_serve_that_bundle_only(tmp_path: Path) -> None:
    """A Medication posted by one sender does not give its code to the next sender's request that
    names a Medication it did not send: that request is rejected without a code."""
    from healthmesh.ingest import ingest_bundle

    db = create_hub(str(tmp_path / "hub.duckdb"))
    poison = {
        "resourceType": "Medication",
        "id": "x",
        "code": {"coding": [{"system": RXNORM, "code": "197361"}]},
    }
    first = ingest_bundle(db, json.dumps(bundle("collection", [patient("a"), poison])), "gwangju", KEY)
    assert first.committed and first.rejected == 0
    request = medication_request("mr", "Patient/b", {"medicationReference": {"reference": "Medication/x"}})
    second = ingest_bundle(db, json.dumps(bundle("collection", [patient("b"), request])), "gwangju", KEY)
    assert [r["reason"] for r in second.rejections] == ["MedicationRequest without a code"]
    assert db.scalar("SELECT count(*) FROM drug_exposure") == 0


def test_the_mimic_demo_loads_with_every_medication_request_resolved(
    shared_data: Path, run_cli: Any, tmp_path: Path
) -> None:
    """MIMIC's requests name a Medication of another file, or a mix of ingredients (its first stands for it)."""
    report = _shared_report(run_cli, shared_data / "fhir" / "mimic-iv-demo-50", tmp_path)
    row = report["by_type"]["MedicationRequest"]
    assert row["rejected"] == 0 and row["loaded"] == row["records"]
