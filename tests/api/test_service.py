"""The service under concurrent requests, and as the real process that ``healthmesh demo`` starts."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from healthmesh.api import HubConfig, create_app, role_tokens, start_hub_service
from healthmesh.cdm import connect
from healthmesh.config import Settings


def test_concurrent_reads_and_writes_on_one_connection_are_safe(
    hub_copy: Path, api_model: Path, patient_bundles: list[dict[str, Any]], make_hub_config: Any
) -> None:
    with connect(hub_copy, read_only=True) as db:
        persons_before = int(db.scalar("SELECT count(*) FROM person"))
    config: HubConfig = make_hub_config(hub_copy, api_model)
    app = create_app(config)
    token = role_tokens(
        "gyeonggi", hub_copy, settings=Settings(secret_key=SecretStr(config.keys.master.decode()))
    )

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:

            def h(role: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {token[role]}"}

            calls = [
                client.post("/cohorts/count", json={"builtin": "type-2-diabetes"}, headers=h("researcher"))
                for _ in range(4)
            ]
            calls += [client.post("/fhir/Bundle", json=b, headers=h("admin")) for b in patient_bundles[:3]]
            calls += [client.get("/audit", headers=h("admin")) for _ in range(4)]
            calls += [
                client.post("/risk/t2dm/score", json=b, headers=h("clinician")) for b in patient_bundles[:3]
            ]
            answers = await asyncio.gather(*calls)
            return [a.status_code for a in answers]

    try:
        statuses = asyncio.run(run())
        assert statuses == [200] * 14
        with app.state.hub.cursor() as db:
            logged = db.scalar("SELECT count(*) FROM hm_audit_log WHERE status = 200")
            persons = db.scalar("SELECT count(*) FROM person")
        assert logged == 14
        assert persons == persons_before + 3
    finally:
        app.state.hub.close()


def test_hub_serve_runs_as_a_process_on_loopback(hub_copy: Path, api_model: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = "4c9e2a7f1b8d3e6a0c5f9b2d7e1a4c8f3b6d0e9a"
    process, url = start_hub_service(
        "gyeonggi",
        hub_copy,
        port,
        models={"t2dm": api_model},
        env={"HEALTHMESH_SECRET_KEY": secret},
        timeout_s=90,
    )
    try:
        tokens = role_tokens("gyeonggi", hub_copy, settings=Settings(secret_key=SecretStr(secret)))
        answer = httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {tokens['clinician']}"})
        assert answer.status_code == 200
        assert [m["name"] for m in answer.json()["models"]] == ["t2dm"]
        assert (
            httpx.get(
                f"{url}/models", headers={"Authorization": f"Bearer {tokens['public-health']}"}
            ).status_code
            == 403
        )
    finally:
        process.terminate()
        assert process.wait(30) is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health")


def test_scoring_worker_processes_answer_as_the_service_itself_does(
    hub_copy: Path, api_model: Path, patient_bundles: list[dict[str, Any]]
) -> None:
    from healthmesh.risk import BundleScorer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = "4c9e2a7f1b8d3e6a0c5f9b2d7e1a4c8f3b6d0e9a"
    process, url = start_hub_service(
        "gyeonggi", hub_copy, port, models={"t2dm": api_model}, env={"HEALTHMESH_SECRET_KEY": secret},
        scoring_processes=1, timeout_s=120,
    )  # fmt: skip
    scorer = BundleScorer(api_model)
    try:
        tokens = role_tokens("gyeonggi", hub_copy, settings=Settings(secret_key=SecretStr(secret)))
        clinician = {"Authorization": f"Bearer {tokens['clinician']}"}
        for bundle in patient_bundles:
            answer = httpx.post(f"{url}/risk/t2dm/score?as_of=2024-06-30", json=bundle, headers=clinician)
            assert answer.status_code == 200, answer.text
            expected = scorer.score(bundle, date(2024, 6, 30))
            assert answer.json() == {"model": "t2dm", **expected}
        # What the workers leave to the database path still gets its answer there: here, the reason.
        broken = json.loads(json.dumps(patient_bundles[0]))
        for entry in broken["entry"]:
            if entry["resource"]["resourceType"] == "Observation":
                entry["resource"]["subject"] = {"reference": "Patient/nobody"}
        refused = httpx.post(f"{url}/risk/t2dm/score", json=broken, headers=clinician)
        assert refused.status_code == 422 and "nobody" in refused.text
        garbled = httpx.post(f"{url}/risk/t2dm/score", content=b'{"resourceType": "Bun', headers=clinician)
        assert garbled.status_code == 422 and "not valid JSON" in garbled.text
        listed = httpx.post(f"{url}/risk/t2dm/score", json=[1, 2], headers=clinician)
        assert listed.status_code == 422
    finally:
        scorer.close()
        process.terminate()
        process.wait(30)
