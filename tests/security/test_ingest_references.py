"""References across posted Bundles: what one sender posts does not resolve another sender's records.

A hub served as a real process (``healthmesh hub serve``, production environment). The attacker
is a feed allowed to post Bundles: it posts a Medication with the id a victim hospital's
requests use but with another drug's code, hoping that the victim's later request that names
``Medication/<id>`` without sending it is stored as the attacker's drug. Each posted Bundle
resolves ``medicationReference`` within itself (and within its own load): the victim's request
is rejected for want of a code and nothing is stored.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import httpx

from healthmesh.api.launch import hub_serve_command, wait_until_ready
from healthmesh.hubkeys import HubKeys

from .fixtures_requests import HUB, free_port, production_env

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def _patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1970-01-01"}


def test_a_posted_medication_does_not_resolve_the_next_senders_request(tmp_path: Path) -> None:
    from healthmesh.cdm import create_hub

    secret = secrets.token_hex(32)
    db = tmp_path / "hub.duckdb"
    create_hub(str(db)).close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "service.log", "ab") as output:
        process = subprocess.Popen(
            hub_serve_command(HUB, db, port),
            env=production_env(secret),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_ready(url, process, timeout_s=120)
        admin = HubKeys(secret.encode()).client_secret(HUB, "admin")
        token = httpx.post(
            f"{url}/token",
            data={"grant_type": "client_credentials", "client_id": "admin", "client_secret": admin},
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        poison = {
            "resourceType": "Medication",
            "id": "ward-7-stock-12",
            "code": {"coding": [{"system": RXNORM, "code": "197361"}]},  # another drug than the victim's
        }
        planted = httpx.post(
            f"{url}/fhir/Bundle", json=_bundle(_patient("attacker"), poison), headers=headers, timeout=60
        )
        request = {
            "resourceType": "MedicationRequest",
            "id": "victim-rx-1",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/victim"},
            "authoredOn": "2024-03-01",
            "medicationReference": {"reference": "Medication/ward-7-stock-12"},
        }
        victim = httpx.post(
            f"{url}/fhir/Bundle", json=_bundle(_patient("victim"), request), headers=headers, timeout=60
        )
    finally:
        process.terminate()
        process.wait(30)
    assert planted.status_code == 200, planted.text
    assert victim.status_code == 422, victim.text
    assert "MedicationRequest without a code" in victim.text
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM drug_exposure").fetchone() == (0,)
