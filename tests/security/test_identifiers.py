"""Identifiers typed into clinical text and codes are stopped at the hub's door.

The attacker (or a careless feed) sends a Bundle whose Condition code is a resident registration
number, whose Observation valueString holds a name and a phone number and whose note holds an
e-mail: once through ``POST /fhir/Bundle`` of a hub served as a real process (production
environment, strong secret, admin token from ``POST /token``), once through bulk ``healthmesh
ingest``. The records land; no column of any table holds any of the strings; the reports count
the redactions.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from healthmesh.api.launch import hub_serve_command, wait_until_ready
from healthmesh.hubkeys import HubKeys

from .fixtures_requests import free_port, production_env

HUB = "gyeonggi"
RRN = "900101-1234568"  # a real birth date and a valid check digit
NAME = "Minjun Kim"
PHONE = "010-1234-5678"
EMAIL = "minjun.kim@example.co.kr"
NEEDLES = (RRN, RRN.replace("-", ""), NAME, PHONE, PHONE.replace("-", ""), EMAIL)


def attack_bundle(patient: str) -> dict[str, Any]:
    subject = {"reference": f"Patient/{patient}"}
    resources = [
        {"resourceType": "Patient", "id": patient, "gender": "male", "birthDate": "1990-01-01"},
        {"resourceType": "Condition", "id": f"{patient}-c", "subject": subject, "onsetDateTime": "2024-03-01",
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": RRN}], "text": f"RRN {RRN}"}},
        {"resourceType": "Observation", "id": f"{patient}-o", "subject": subject,
         "effectiveDateTime": "2024-03-01", "status": "final",
         "code": {"coding": [{"system": "http://loinc.org", "code": "46240-8"}]},
         "valueString": f"{NAME} {PHONE}", "note": [{"text": f"reach me at {EMAIL}"}]},
    ]  # fmt: skip
    return {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": r} for r in resources]}


def found_in_database(db: Path) -> list[tuple[str, str]]:
    """(schema.table.column, needle) for each needle in any VARCHAR column of any table of ``db``."""
    hits = []
    with duckdb.connect(str(db), read_only=True) as con:
        columns = con.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns"
            " WHERE data_type = 'VARCHAR'"
        ).fetchall()
        assert len(columns) > 50
        for schema, table, column in columns:
            for needle in NEEDLES:
                count = con.execute(
                    f'SELECT count(*) FROM "{schema}"."{table}" WHERE contains("{column}", ?)', [needle]
                ).fetchone()
                if count and count[0]:
                    hits.append((f"{schema}.{table}.{column}", needle))
    return hits


def landed(db: Path) -> tuple[int, int, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute(
            "SELECT (SELECT count(*) FROM person), (SELECT count(*) FROM condition_occurrence"
            " WHERE condition_concept_id = 0 AND condition_source_value IS NULL),"
            " (SELECT count(*) FROM observation WHERE value_as_string IS NULL)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


@pytest.fixture(scope="module")
def secret() -> str:
    return secrets.token_hex(32)


def test_bulk_ingest_stores_none_of_the_typed_identifiers(tmp_path: Path, secret: str) -> None:
    source = tmp_path / "feed" / "bundle.json"
    source.parent.mkdir()
    source.write_text(json.dumps(attack_bundle("bulk-1")))
    db = tmp_path / "hub.duckdb"
    result = subprocess.run(
        [sys.executable, "-m", "healthmesh", "ingest", str(source), "--db", str(db), "--hub", HUB, "--quiet"],
        env=production_env(secret) | {"COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "redacted 2 identifier-looking values (KR_RRN 1, PHONE 1)" in result.stdout
    report_text = db.with_name(db.name + ".ingest-report.json").read_text()
    report = json.loads(report_text)
    assert report["totals"]["loaded"] == 3 and report["totals"]["rejected"] == 0
    assert report["redactions"]["by_type"] == {
        "Condition": {"code": {"KR_RRN": 1}},
        "Observation": {"valueString": {"PHONE": 1}},
    }
    assert not any(needle in report_text + result.stdout + result.stderr for needle in NEEDLES)
    assert landed(db) == (1, 1, 1)
    assert found_in_database(db) == []


def test_posted_bundle_stores_none_of_the_typed_identifiers(tmp_path: Path, secret: str) -> None:
    from healthmesh.cdm import create_hub

    db = tmp_path / "hub.duckdb"
    create_hub(str(db)).close()
    log = tmp_path / "service.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log, "ab") as output:
        process = subprocess.Popen(
            hub_serve_command(HUB, db, port),
            env=production_env(secret),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_ready(url, process, timeout_s=120)
        admin = HubKeys(secret.encode()).client_secret(HUB, "admin")  # as `healthmesh hub clients` lists it
        token = httpx.post(
            f"{url}/token",
            data={"grant_type": "client_credentials", "client_id": "admin", "client_secret": admin},
        )
        assert token.status_code == 200, token.text
        answer = httpx.post(
            f"{url}/fhir/Bundle",
            json=attack_bundle("api-1"),
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            timeout=60,
        )
    finally:
        process.terminate()
        process.wait(30)
    assert answer.status_code == 200, answer.text
    outcome = answer.json()["issue"][0]["diagnostics"]
    assert "stored 3 of 3 resources" in outcome
    assert "2 identifier-looking values not stored (KR_RRN 1, PHONE 1)" in outcome
    assert not any(needle in answer.text + log.read_text(errors="replace") for needle in NEEDLES)
    assert landed(db) == (1, 1, 1)
    assert found_in_database(db) == []
