"""The live network end to end, on real processes: a coordinator and three hubs serving their APIs.

A study's life (submit, run at once, held, approved, refused with a reason, results downloaded,
audited at each hub), what a researcher and a hub may not do, and a hub answering its API and the
network at the same time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from healthmesh.api.launch import role_tokens
from healthmesh.cli import app
from healthmesh.config import Settings, hub_keys
from healthmesh.errors import FederationError
from healthmesh.federation.cdm_tasks import hub_concept_counts
from healthmesh.network.client import NetworkClient, tls_context
from healthmesh.network.launch import LiveNetwork
from healthmesh.privacy.release import Release

DIABETES = 201826
HUBS = {"busan", "gwangju", "gyeonggi"}


@pytest.fixture(autouse=True)
def _hub_keys_from_files(monkeypatch: pytest.MonkeyPatch) -> None:
    # The hubs keep their keys in files beside their databases; so must the admin's commands here.
    monkeypatch.delenv("HEALTHMESH_SECRET_KEY", raising=False)


def researcher(live: LiveNetwork, name: str = "alice") -> NetworkClient:
    return NetworkClient(live.coordinator.url, live.researchers[name], ca=live.ca)


def admin(live: LiveNetwork, hub: str) -> dict[str, str]:
    token = role_tokens(hub, live.hub_dbs[hub], settings=Settings(secret_key=None))["admin"]
    return {"Authorization": f"Bearer {token}"}


def hub_credential(live: LiveNetwork, hub: str) -> str:
    return (live.coordinator.log.parent / "hubs" / hub / "network-credential").read_text().strip()


def states(study: dict[str, Any]) -> dict[str, str]:
    return {hub: part["state"] for hub, part in study["hubs"].items()}


def audit_of(live: LiveNetwork, hub: str, study_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{live.hubs[hub].url}/audit", params={"limit": 500}, headers=admin(live, hub))
    assert response.status_code == 200, response.text
    return [entry for entry in response.json()["entries"] if study_id in (entry["route"] or "")]


def wait_for(predicate: Any, client: NetworkClient, study_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        study = client.study(study_id, wait_s=1.0)
        if predicate(study) or time.monotonic() > deadline:
            return study


def test_a_count_runs_at_once_at_every_hub_through_its_release_path(
    live: LiveNetwork, generated_hubs: dict[str, Path]
) -> None:
    job = {"concept_ids": [DIABETES], "characterize": False}
    with researcher(live) as client:
        submitted = client.submit({"kind": "count", "purpose": "diabetes prevalence", **job})
        assert submitted["state"] == "open"
        study = client.wait_finished(submitted["study_id"], 30)
    assert study["state"] == "finished"
    assert states(study) == dict.fromkeys(HUBS, "done")
    persons = {hub: part["result"]["persons"] for hub, part in study["hubs"].items()}
    assert study["network"]["persons"] == {
        "count": sum(persons.values()),
        "withheld_at": [],
        "complete": True,
    }
    # Each hub released exactly what its own release path gives for its data, with its own key.
    for hub, source in (("busan", generated_hubs["busan"]), ("gyeonggi", generated_hubs["gyeonggi"])):
        release = Release(hub_keys(Settings(secret_key=None), live.hub_dbs[hub]).release, 5)
        expected, true_count = hub_concept_counts(str(source), job, release)
        assert persons[hub] == expected["persons"]
        assert abs(persons[hub] - true_count) <= 3 and true_count >= 5


def test_a_hub_refuses_what_its_policy_forbids_and_every_answer_is_audited_with_the_study(
    live: LiveNetwork,
) -> None:
    with researcher(live) as client:
        study_id = client.submit(
            {"kind": "count", "purpose": "diabetes by sex and age", "concept_ids": [DIABETES]}
        )["study_id"]
        study = client.wait_finished(study_id, 30)
    assert states(study) == {"busan": "done", "gwangju": "refused", "gyeonggi": "done"}
    assert "characterize" in study["hubs"]["gwangju"]["note"]
    assert study["network"]["missing"] == ["gwangju"]
    assert study["network"]["persons"]["complete"] is False
    assert any(key.startswith("sex=") for key in study["hubs"]["busan"]["result"]["cells"])
    for hub, status in (("busan", 200), ("gyeonggi", 200), ("gwangju", 403)):
        entries = audit_of(live, hub, study_id)
        assert [(e["subject"], e["purpose"], e["status"]) for e in entries] == [
            ("network:alice", "diabetes by sex and age", status)
        ]
        assert (entries[0]["rows_touched"] or 0) >= (5 if status == 200 else 0)


def test_a_held_study_is_approved_at_one_hub_and_refused_at_another(
    live: LiveNetwork, tmp_path: Path
) -> None:
    runner = CliRunner()
    with researcher(live) as client:
        study_id = client.submit({"kind": "characterization", "purpose": "site feasibility"})["study_id"]
        held = wait_for(
            lambda s: (
                all(s["hubs"][h]["note"] for h in ("busan", "gyeonggi"))
                and s["hubs"]["gwangju"]["state"] != "waiting"
            ),
            client,
            study_id,
        )
        assert states(held) == {"busan": "waiting", "gwangju": "refused", "gyeonggi": "waiting"}
        assert "held for the admin" in held["hubs"]["gyeonggi"]["note"]

        hub_cli = [
            "--hub",
            "gyeonggi",
            "--db",
            str(live.hub_dbs["gyeonggi"]),
            "--url",
            live.hubs["gyeonggi"].url,
        ]
        listed = runner.invoke(app, ["hub", "waiting", *hub_cli])
        assert listed.exit_code == 0 and study_id in listed.output
        approved = runner.invoke(app, ["hub", "approve", *hub_cli, "--study", study_id])
        assert approved.exit_code == 0, approved.output
        refused = httpx.post(
            f"{live.hubs['busan'].url}/network/studies/{study_id}/refuse",
            json={"reason": "no characterizations during the audit month"},
            headers=admin(live, "busan"),
        )
        assert refused.status_code == 200, refused.text
        study = client.wait_finished(study_id, 60)

    assert study["state"] == "finished"
    assert states(study) == {"busan": "refused", "gwangju": "refused", "gyeonggi": "done"}
    assert "no characterizations during the audit month" in study["hubs"]["busan"]["note"]
    assert study["hubs"]["gyeonggi"]["result"]["analyses"]
    # Approving what is no longer waiting is refused, with the reason.
    again = runner.invoke(app, ["hub", "approve", *hub_cli, "--study", study_id])
    assert again.exit_code != 0 and "cannot become approved" in str(again.exception)
    # The results are downloadable as JSON.
    out = tmp_path / "results.json"
    token = ["--network", live.coordinator.url, "--token", live.researchers["alice"], "--ca", str(live.ca)]
    downloaded = runner.invoke(app, ["study", "results", study_id, *token, "--out", str(out)])
    assert downloaded.exit_code == 0, downloaded.output
    assert json.loads(out.read_text())["hubs"]["gyeonggi"]["result"] == study["hubs"]["gyeonggi"]["result"]
    assert [e["status"] for e in audit_of(live, "busan", study_id)] == [403]
    assert [e["status"] for e in audit_of(live, "gyeonggi", study_id)] == [200]


def test_a_cohort_attrition_waits_where_the_policy_says(live: LiveNetwork) -> None:
    submitted = CliRunner().invoke(
        app,
        ["study", "submit", "--kind", "cohort-attrition", "--cohort", "type-2-diabetes", "--purpose", "attrition",
         "--network", live.coordinator.url, "--token", live.researchers["alice"], "--ca", str(live.ca)],
    )  # fmt: skip
    assert submitted.exit_code == 0, submitted.output
    study_id = submitted.output.split()[0]
    with researcher(live) as client:
        study = wait_for(
            lambda s: s["hubs"]["busan"]["note"] and s["hubs"]["gyeonggi"]["state"] == "done",
            client,
            study_id,
        )
    assert study["hubs"]["busan"]["state"] == "waiting"
    steps = study["hubs"]["gyeonggi"]["result"]["attrition"]
    assert steps and all(s["persons"] is None or s["persons"] >= 5 for s in steps)
    assert [s["step"] for s in study["network"]["attrition"]] == [s["step"] for s in steps]


def test_a_study_with_a_deadline_finishes_without_the_hubs_that_did_not_answer(live: LiveNetwork) -> None:
    with researcher(live) as client:
        study_id = client.submit(
            {
                "kind": "characterization",
                "purpose": "quick look",
                "hubs": ["busan", "gwangju"],
                "deadline_s": 2,
            }
        )["study_id"]
        study = client.wait_finished(study_id, 20)
    assert study["state"] == "finished"
    assert states(study) == {"busan": "failed", "gwangju": "refused"}  # busan held it past the deadline
    assert "deadline" in study["hubs"]["busan"]["note"]
    assert study["network"]["missing"] == ["busan", "gwangju"]


def test_a_researcher_sees_only_their_own_studies(live: LiveNetwork) -> None:
    with researcher(live, "alice") as alice, researcher(live, "bob") as bob:
        study_id = alice.submit(
            {"kind": "count", "purpose": "private", "concept_ids": [DIABETES], "hubs": ["gyeonggi"]}
        )["study_id"]
        with pytest.raises(FederationError, match="no study"):
            bob.study(study_id)
        assert study_id not in {s["study_id"] for s in bob.studies()}
        assert study_id in {s["study_id"] for s in alice.studies()}
    # A researcher's token does not open the hubs' routes.
    response = httpx.get(
        f"{live.coordinator.url}/hub/studies",
        headers={"Authorization": f"Bearer {live.researchers['bob']}"},
        verify=tls_context(live.ca),
    )
    assert response.status_code == 403


def test_only_the_addressed_hub_with_its_own_credential_can_post_a_result(live: LiveNetwork) -> None:
    with researcher(live) as client:
        study_id = client.submit(
            {
                "kind": "count",
                "purpose": "one hub",
                "concept_ids": [DIABETES],
                "hubs": ["gyeonggi"],
                "characterize": False,
            }
        )["study_id"]
        study = client.wait_finished(study_id, 30)
    url = f"{live.coordinator.url}/hub/studies/{study_id}/result"
    forged = {"result": {"persons": 1_000_000}}

    def post(token: str) -> httpx.Response:
        return httpx.post(
            url, json=forged, headers={"Authorization": f"Bearer {token}"}, verify=tls_context(live.ca)
        )

    assert post("hmh_" + "x" * 43).status_code == 401  # a wrong credential
    assert post(live.researchers["alice"]).status_code == 403  # not a hub
    assert post(hub_credential(live, "busan")).status_code == 404  # not addressed to busan
    assert post(hub_credential(live, "gyeonggi")).status_code == 409  # done already: not rewritten
    with researcher(live) as client:
        assert client.study(study_id)["hubs"] == study["hubs"]


def test_bad_requests_get_one_line_reasons(live: LiveNetwork) -> None:
    with researcher(live) as client:
        for request, reason in (
            ({"kind": "train", "purpose": "model"}, "healthmesh federate"),
            ({"kind": "count", "purpose": "no concepts"}, "concept_ids"),
            (
                {"kind": "count", "purpose": "where", "concept_ids": [1], "hubs": ["nowhere"]},
                "no hub 'nowhere'",
            ),
            ({"kind": "cohort-attrition", "purpose": "which", "builtin": "no-such"}, "no built-in cohort"),
        ):
            with pytest.raises(FederationError, match=reason) as caught:
                client.submit(request)
            assert "\n" not in str(caught.value) and "HTTP 422" in str(caught.value)
    oversized = httpx.post(
        f"{live.coordinator.url}/studies",
        json={"kind": "count", "purpose": "x" * (2 * 1024 * 1024), "concept_ids": [1]},
        headers={"Authorization": f"Bearer {live.researchers['bob']}"},
        verify=tls_context(live.ca),
    )
    assert oversized.status_code == 413 and "at most" in oversized.json()["detail"]
    done = subprocess.run(
        [sys.executable, "-m", "healthmesh", "study", "submit", "--kind", "validate", "--purpose", "x y z"],
        env={
            **os.environ,
            "HEALTHMESH_NETWORK_URL": live.coordinator.url,
            "HEALTHMESH_NETWORK_TOKEN": live.researchers["bob"],
            "HEALTHMESH_NETWORK_CA": str(live.ca),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 12
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_hub_answers_its_api_and_the_network_at_the_same_time(live: LiveNetwork) -> None:
    token = role_tokens("gyeonggi", live.hub_dbs["gyeonggi"], settings=Settings(secret_key=None))[
        "researcher"
    ]
    hub_url = live.hubs["gyeonggi"].url

    def api_count() -> int:
        response = httpx.post(
            f"{hub_url}/cohorts/count",
            json={"builtin": "type-2-diabetes"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        return response.status_code

    def study() -> dict[str, Any]:
        with researcher(live) as client:
            study_id = client.submit(
                {"kind": "count", "purpose": "interleaved", "concept_ids": [DIABETES], "hubs": ["gyeonggi"]}
            )["study_id"]
            return client.wait_finished(study_id, 60)

    with ThreadPoolExecutor(6) as pool:
        api = [pool.submit(api_count) for _ in range(6)]
        studies = [pool.submit(study) for _ in range(6)]
        api_codes = [f.result() for f in api]
        answers = [f.result() for f in studies]
    assert api_codes == [200] * 6
    assert [states(s) for s in answers] == [{"gyeonggi": "done"}] * 6
    assert len({s["hubs"]["gyeonggi"]["result"]["persons"] for s in answers}) == 1  # the same released count


def test_hubs_serve_without_the_coordinator_and_rejoin_when_it_is_back(live: LiveNetwork) -> None:
    with researcher(live) as client:
        held = client.submit(
            {"kind": "characterization", "purpose": "kept over a restart", "hubs": ["gyeonggi"]}
        )
        wait_for(lambda s: s["hubs"]["gyeonggi"]["note"], client, held["study_id"])
    live.coordinator.stop()
    token = role_tokens("busan", live.hub_dbs["busan"], settings=Settings(secret_key=None))["researcher"]
    alone = httpx.post(
        f"{live.hubs['busan'].url}/cohorts/count",
        json={"builtin": "type-2-diabetes"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert alone.status_code == 200  # a hub's own users do not depend on the coordinator
    live.coordinator.restart()
    with researcher(live) as client:
        kept = client.study(held["study_id"])
        assert kept["hubs"]["gyeonggi"]["state"] == "waiting" and kept["hubs"]["gyeonggi"]["note"]
        study_id = client.submit(
            {
                "kind": "count",
                "purpose": "after the restart",
                "concept_ids": [DIABETES],
                "characterize": False,
            }
        )["study_id"]
        study = client.wait_finished(study_id, 30)
    assert states(study) == dict.fromkeys(HUBS, "done")


def test_a_hub_killed_mid_study_finishes_it_when_it_comes_back(live: LiveNetwork) -> None:
    with researcher(live) as client:
        study_id = client.submit(
            {"kind": "characterization", "purpose": "survives a crash", "hubs": ["busan"]}
        )["study_id"]
        wait_for(lambda s: s["hubs"]["busan"]["note"], client, study_id)
        approved = httpx.post(
            f"{live.hubs['busan'].url}/network/studies/{study_id}/approve", headers=admin(live, "busan")
        )
        assert approved.status_code == 200, approved.text
        live.hubs["busan"].process.kill()  # SIGKILL while it computes
        live.hubs["busan"].process.wait()
        assert client.study(study_id)["hubs"]["busan"]["state"] in ("approved", "running")
        live.hubs["busan"].restart()
        study = client.wait_finished(study_id, 60)
    assert states(study) == {"busan": "done"}
    assert study["hubs"]["busan"]["result"]["analyses"]
    assert [e["status"] for e in audit_of(live, "busan", study_id)] == [200]
