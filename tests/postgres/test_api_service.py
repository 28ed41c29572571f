"""The hub service answers the same over a DuckDB hub and a PostgreSQL hub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from healthmesh.api import config_from_settings, create_app
from healthmesh.cdm import HubDatabase

BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {
            "resource": {
                "resourceType": "Patient",
                "id": "api-p1",
                "gender": "female",
                "birthDate": "1961-04-02",
            }
        },
        {
            "resource": {
                "resourceType": "Observation",
                "id": "api-o1",
                "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                "subject": {"reference": "Patient/api-p1"},
                "effectiveDateTime": "2024-03-01",
                "valueQuantity": {"value": 7.2, "unit": "%"},
            }
        },
    ],
}


def test_bundle_catalog_and_audit_over_either_engine(
    backend_db: HubDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEALTHMESH_SECRET_KEY", "e8a3c1f6b9d2e5a7c0f4b8d1e6a9c3f7b2d5e0a4")
    target = getattr(backend_db, "url", None) or backend_db.path
    backend_db.close()
    config = config_from_settings("busan", Path(str(target)))
    with TestClient(create_app(config)) as client:
        secret = config.clients["admin"].secret
        token = client.post(
            "/token", data={"grant_type": "client_credentials", "client_id": "admin", "client_secret": secret}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        posted = client.post(
            "/fhir/Bundle",
            content=json.dumps(BUNDLE),
            headers={**headers, "Content-Type": "application/fhir+json"},
        )
        assert posted.status_code == 200, posted.text
        assert posted.json()["resourceType"] == "OperationOutcome"
        broken = client.post("/fhir/Bundle", content="{not json", headers=headers)
        assert broken.status_code in (400, 422)
        assert client.get("/catalog", headers=headers).status_code == 200
        audit = client.get("/audit", headers=headers).json()
    routes = json.dumps(audit)
    assert "/fhir/Bundle" in routes and "/catalog" in routes
