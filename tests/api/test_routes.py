"""What the data routes answer: suppressed cohort counts, risk scores, aggregates, forecasts, bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from healthmesh.api.routes.cohorts import release_attrition
from healthmesh.cohorts import build_cohort, load_cohort
from healthmesh.privacy.release import Release
from healthmesh.risk import BundleScorer

T2DM = {"t2dm": [{"vocabulary_id": "SNOMED", "concept_code": "44054006", "descendants": True}]}


def _headers(client: TestClient, get_token: Callable[[TestClient, str], str], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {get_token(client, role)}"}


def test_release_attrition_perturbs_each_step_by_its_person_set() -> None:
    release = Release(b"k" * 32, 5)
    sets = {"a": range(100), "b": range(97), "c": range(90), "d": range(3), "e": range(0)}
    steps = [{"step": k, "persons": len(v), "cell_key": release.person_key(v)} for k, v in sets.items()]
    released = [s["persons"] for s in release_attrition(steps, release)]
    for shown, (name, persons) in zip(released, sets.items(), strict=True):
        assert shown == release.count(len(persons), release.person_key(persons)), name
    assert released[3] is None and released[4] is None  # 3 persons, and none: withheld
    assert all(
        abs(s - len(p)) <= 3 for s, p in zip(released[:3], sets.values(), strict=False) if s is not None
    )


def test_cohort_count_matches_the_cohort_package_and_is_suppressed(
    shared_client: TestClient, get_token: Callable[[TestClient, str], str]
) -> None:
    definition = {
        "name": "t2dm-aged-90-plus",
        "concept_sets": T2DM,
        "entry": {"domain": "condition", "concept_set": "t2dm", "limit": "first"},
        "inclusion_rules": [
            {"name": "aged 18 or older", "age_min": 18},
            {"name": "aged 90 or older", "age_min": 90},
        ],
    }
    answer = shared_client.post(
        "/cohorts/count",
        json={"definition": definition},
        headers=_headers(shared_client, get_token, "researcher"),
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    with shared_client.app.state.hub.cursor() as db:  # type: ignore[attr-defined]
        truth = build_cohort(db, load_cohort(definition)).attrition
    assert [s["step"] for s in body["attrition"]] == [s["step"] for s in truth]
    for shown, true in zip(body["attrition"], truth, strict=True):
        assert shown["persons"] is None or abs(shown["persons"] - true["persons"]) <= 3
        assert shown["persons"] is None or shown["persons"] >= 5
    assert truth[0]["persons"] > 8 and abs(body["attrition"][0]["persons"] - truth[0]["persons"]) <= 3
    assert body["persons"] == body["attrition"][-1]["persons"]


def test_cohort_count_rejects_bad_definitions_with_one_line(
    shared_client: TestClient, get_token: Callable[[TestClient, str], str]
) -> None:
    headers = _headers(shared_client, get_token, "researcher")
    undefined = {"name": "x", "entry": {"domain": "condition", "concept_set": "nope"}}
    answer = shared_client.post("/cohorts/count", json={"definition": undefined}, headers=headers)
    assert answer.status_code == 422
    assert "concept set 'nope'" in answer.json()["detail"] and "\n" not in answer.json()["detail"]
    assert shared_client.post("/cohorts/count", json={}, headers=headers).status_code == 422
    unknown = shared_client.post("/cohorts/count", json={"builtin": "no-such"}, headers=headers)
    assert unknown.status_code == 422 and "no built-in cohort" in unknown.json()["detail"]


def test_single_patient_score_equals_the_risk_package_and_explains_itself(
    shared_client: TestClient,
    get_token: Callable[[TestClient, str], str],
    patient_bundles: list[dict[str, Any]],
    api_model: Any,
) -> None:
    headers = _headers(shared_client, get_token, "clinician")
    answer = shared_client.post(
        "/risk/t2dm/score", json=patient_bundles[0], params={"top": 5}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    direct = BundleScorer(api_model)
    try:
        expected = direct.score(patient_bundles[0], top=5)
    finally:
        direct.close()
    np.testing.assert_allclose(body["risk"], expected["risk"], rtol=1e-9)
    assert 0 < body["risk"] < 1
    assert [f["feature"] for f in body["top_features"]] == [f["feature"] for f in expected["top_features"]]
    assert len(body["top_features"]) <= 5
    assert shared_client.post("/risk/nope/score", json=patient_bundles[0], headers=headers).status_code == 404
    two = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": patient_bundles[0]["entry"] + patient_bundles[1]["entry"],
    }
    refused = shared_client.post("/risk/t2dm/score", json=two, headers=headers)
    assert refused.status_code == 422 and "exactly one patient" in refused.json()["detail"]


def test_batch_scores_named_patients_for_clinicians_and_a_distribution_for_researchers(
    shared_client: TestClient, get_token: Callable[[TestClient, str], str]
) -> None:
    with shared_client.app.state.hub.cursor() as db:  # type: ignore[attr-defined]
        ids = [int(r[0]) for r in db.rows(
            "SELECT p.person_id FROM person p JOIN observation_period op USING (person_id) "
            "WHERE p.person_id NOT IN (SELECT person_id FROM death) GROUP BY 1 "
            "HAVING max(op.observation_period_end_date) > DATE '2024-02-01' ORDER BY 1 LIMIT 3"
        )]  # fmt: skip
        persons = int(db.scalar("SELECT count(*) FROM person"))
    clinician = _headers(shared_client, get_token, "clinician")
    some = shared_client.post(
        "/risk/t2dm/batch", json={"person_ids": ids, "as_of": "2024-01-17"}, headers=clinician
    )
    assert some.status_code == 200, some.text
    assert sorted(s["person_id"] for s in some.json()["scores"]) == ids
    assert all(s["index_date"] == "2024-01-01" for s in some.json()["scores"])  # a month, not a day
    researcher = _headers(shared_client, get_token, "researcher")
    everyone = shared_client.post("/risk/t2dm/batch", json={}, headers=researcher).json()
    assert everyone["view"] == "distribution" and "scores" not in everyone
    assert abs(everyone["persons"] - persons) <= 3
    assert sum(b["persons"] or 0 for b in everyone["bands"]) == pytest.approx(persons, abs=30)


def test_aggregates_are_released_with_small_cells_withheld(
    shared_client: TestClient, get_token: Callable[[TestClient, str], str]
) -> None:
    headers = _headers(shared_client, get_token, "peer-hub")
    catalog = shared_client.get("/catalog", headers=headers).json()
    assert catalog["hub"] == "gyeonggi" and catalog["person_count"] >= 1000
    quality = shared_client.get("/quality", headers=headers).json()
    assert quality["summary"]["checks_run"] > 100
    characterization = shared_client.get("/characterization", headers=headers).json()
    counts = [
        v for a in characterization["analyses"] for row in a["rows"] for k, v in row.items()
        if k in ("count_value", "persons", "records") and v is not None
    ]  # fmt: skip
    assert counts and all(v == 0 or v >= 5 for v in counts)


def test_forecasts_and_rt_per_region(
    shared_client: TestClient, get_token: Callable[[TestClient, str], str]
) -> None:
    headers = _headers(shared_client, get_token, "public-health")
    answer = shared_client.get("/forecasts", params={"horizon": 2, "model": "baseline"}, headers=headers)
    assert answer.status_code == 200, answer.text
    regions = answer.json()["regions"]
    assert regions
    for weeks in regions.values():
        assert len(weeks) == 2
        assert all(w["q0.025"] <= w["q0.5"] <= w["q0.975"] for w in weeks)
    rt = shared_client.get("/forecasts/rt", params={"weeks": 3}, headers=headers).json()["regions"]
    assert rt and all(
        0 < len(v) <= 3 and v[-1]["lower95"] <= v[-1]["mean"] <= v[-1]["upper95"] for v in rt.values()
    )


def test_bad_input_gets_a_4xx_with_one_line(
    shared_client: TestClient, get_token: Callable[[TestClient, str], str]
) -> None:
    headers = _headers(shared_client, get_token, "admin")
    cases = [
        shared_client.post(
            "/fhir/Bundle", content=b"{not json", headers=headers | {"Content-Type": "application/json"}
        ),
        shared_client.post("/fhir/Bundle", json=[1, 2], headers=headers),
        shared_client.get("/forecasts", params={"horizon": 99}, headers=headers),
        shared_client.get("/audit", params={"limit": -1}, headers=headers),
        shared_client.post(
            "/risk/t2dm/score", json={"resourceType": "Bundle", "entry": "x"}, headers=headers
        ),
    ]
    for answer in cases:
        assert 400 <= answer.status_code < 500, answer.text
        assert isinstance(answer.json()["detail"], str) and "\n" not in answer.json()["detail"]
