"""The service under concurrent requests, and as the real process that ``healthmesh demo`` starts."""

from __future__ import annotations

import asyncio
import socket
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
    token = role_tokens("gyeonggi", hub_copy, settings=Settings(secret_key=SecretStr(config.secret)))

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
    secret = "process-test-secret-0123456789abcdef"
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
