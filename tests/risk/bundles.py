"""Test helper: one patient's FHIR Bundle cut out of generated Bulk NDJSON."""

from __future__ import annotations

import json
from pathlib import Path


def patient_bundle(ndjson_dir: Path, patient_index: int = 0) -> tuple[str, dict]:
    """The ``patient_index``-th Patient with every resource that refers to it, as a transaction Bundle."""
    patients = [json.loads(line) for p in sorted(ndjson_dir.glob("Patient*.ndjson")) for line in p.open()]
    patient = patients[patient_index]
    reference = f'"Patient/{patient["id"]}"'
    entries = [patient]
    for path in sorted(ndjson_dir.glob("*.ndjson")):
        if path.name.startswith("Patient"):
            continue
        with path.open() as handle:
            for line in handle:
                if reference in line or path.name.startswith(("Organization", "Practitioner")):
                    entries.append(json.loads(line))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in entries
        ],
    }
    return str(patient["id"]), bundle
