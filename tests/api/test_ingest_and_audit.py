"""Posting FHIR Bundles (all or nothing) and the audit log of every data access."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from healthmesh.api import AUDIT_TABLE
from healthmesh.cdm import cdm_tables


def _cdm_counts(client: TestClient) -> dict[str, int]:
    with client.app.state.hub.cursor() as db:  # type: ignore[attr-defined]
        return db.table_counts(sorted(cdm_tables()))


def _audit(client: TestClient, auth: Callable[[str], dict[str, str]]) -> list[dict[str, Any]]:
    answer = client.get("/audit", params={"limit": 1000}, headers=auth("admin"))
    assert answer.status_code == 200
    return answer.json()["entries"]


def test_a_good_bundle_is_stored_and_answered_with_an_operation_outcome(
    client: TestClient, auth: Callable[[str], dict[str, str]], patient_bundles: list[dict[str, Any]]
) -> None:
    before = _cdm_counts(client)
    answer = client.post("/fhir/Bundle", json=patient_bundles[0], headers=auth("admin"))
    assert answer.status_code == 200, answer.text
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "information"
    after = _cdm_counts(client)
    assert after["person"] == before["person"] + 1
    assert after["measurement"] > before["measurement"]


def test_a_bad_bundle_gets_422_and_leaves_the_database_unchanged(
    client: TestClient, auth: Callable[[str], dict[str, str]], patient_bundles: list[dict[str, Any]]
) -> None:
    bad = copy.deepcopy(patient_bundles[1])
    patient = next(e["resource"] for e in bad["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["birthDate"] = "not-a-date"
    before = _cdm_counts(client)
    answer = client.post("/fhir/Bundle", json=bad, headers=auth("admin"))
    assert answer.status_code == 422
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["diagnostics"].startswith("nothing stored")
    assert any("birthDate 'not-a-date'" in issue["diagnostics"] for issue in outcome["issue"])
    assert _cdm_counts(client) == before
    not_a_bundle = client.post("/fhir/Bundle", json={"resourceType": "Patient"}, headers=auth("admin"))
    assert not_a_bundle.status_code == 422
    assert "expected resourceType 'Bundle'" in not_a_bundle.json()["issue"][0]["diagnostics"]
    assert _cdm_counts(client) == before
    broken = client.post(
        "/fhir/Bundle", content=b'{"resourceType": "Bundle", "entry": [', headers=auth("admin")
    )
    assert broken.status_code == 422
    assert broken.json()["resourceType"] == "OperationOutcome"
    assert _cdm_counts(client) == before


def test_every_data_access_is_audited_with_who_why_rows_and_outcome(
    client: TestClient, auth: Callable[[str], dict[str, str]], patient_bundles: list[dict[str, Any]]
) -> None:
    researcher = auth("researcher") | {"X-Purpose": "feasibility study 42"}
    assert (
        client.post("/cohorts/count", json={"builtin": "type-2-diabetes"}, headers=researcher).status_code
        == 200
    )
    assert client.post("/fhir/Bundle", json=patient_bundles[2], headers=auth("clinician")).status_code == 403
    assert client.get("/cohorts").status_code == 401
    assert client.get("/health").status_code == 200
    entries = _audit(client, auth)
    by_route = {(e["method"], e["route"], e["status"]): e for e in entries}
    count = by_route[("POST", "/cohorts/count", 200)]
    assert (count["subject"], count["role"], count["purpose"], count["outcome"]) == (
        "researcher", "researcher", "feasibility study 42", "ok",
    )  # fmt: skip
    assert count["rows_touched"] > 0
    denied = by_route[("POST", "/fhir/Bundle", 403)]
    assert (denied["subject"], denied["outcome"]) == ("clinician", "forbidden")
    assert by_route[("GET", "/cohorts", 401)]["outcome"] == "unauthenticated"
    assert not any(e["route"] == "/health" for e in entries)
    assert [e["entry_id"] for e in entries] == sorted((e["entry_id"] for e in entries), reverse=True)


def test_the_audit_log_is_a_table_of_the_hub_database(
    client: TestClient, auth: Callable[[str], dict[str, str]], hub_copy: Path
) -> None:
    client.get("/catalog", headers=auth("public-health") | {"X-Purpose": "regional overview"})
    with client.app.state.hub.cursor() as db:  # type: ignore[attr-defined]
        rows = db.rows(f"SELECT subject, route, purpose, status FROM {AUDIT_TABLE} WHERE route = '/catalog'")
    assert rows == [("public-health", "/catalog", "regional overview", 200)]


def test_no_code_path_updates_or_deletes_audit_rows() -> None:
    import healthmesh.api as api

    source = "\n".join(p.read_text() for p in Path(api.__file__).parent.rglob("*.py")).lower()
    assert "insert into {audit_table}" in source
    for verb in (
        "update {audit_table}",
        "delete from {audit_table}",
        "update hm_audit_log",
        "delete from hm_audit_log",
    ):
        assert verb not in source
