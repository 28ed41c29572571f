"""Least privilege, attacked on a served hub: no researcher gets a person-level row; date probing is bounded.

The attacker holds a researcher's or a clinician's client credentials and talks to
``healthmesh hub serve`` (production mode) over HTTP.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from healthmesh.cdm import connect

from .fixtures_requests import ServedHub

DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@pytest.fixture
def hub(served_hub: ServedHub) -> ServedHub:
    """The session's served hub (conftest): its log is checked for tracebacks when it stops."""
    return served_hub


@pytest.fixture(scope="module")
def persons(generated_hub: Path) -> dict[str, list[int]]:
    """Who the attacker aims at: living persons observed for years, and deceased ones."""
    with connect(generated_hub, read_only=True) as db:
        living = db.rows(
            "SELECT p.person_id FROM person p JOIN observation_period op USING (person_id) "
            "WHERE p.person_id NOT IN (SELECT person_id FROM death) GROUP BY 1 "
            "HAVING max(op.observation_period_end_date) > DATE '2023-06-01' ORDER BY 1 LIMIT 25"
        )
        deceased = db.rows("SELECT person_id FROM death ORDER BY 1 LIMIT 2")
    return {"living": [int(r[0]) for r in living], "deceased": [int(r[0]) for r in deceased]}


def _batch(hub: ServedHub, role: str, body: object) -> httpx.Response:
    return httpx.post(f"{hub.url}/risk/t2dm/batch", json=body, headers=hub.headers(role), timeout=60)


def test_a_researchers_batch_is_a_released_distribution_without_persons_dates_or_risks(
    hub: ServedHub,
) -> None:
    answer = _batch(hub, "researcher", {})
    assert answer.status_code == 200, answer.text
    document = answer.json()
    text = json.dumps(document)
    assert "person_id" not in text and "scores" not in document
    assert not DATE.search(text), "a date in a researcher's answer"
    assert document["view"] == "distribution"
    # Every count is released: none of 1-4, none withheld without saying so.
    for band in document["bands"]:
        assert band["persons"] is None or band["persons"] == 0 or band["persons"] >= 5
        assert band["suppressed"] == (band["persons"] is None)
    numbers = [band["persons"] for band in document["bands"] if band["persons"]]
    assert len(numbers) <= 6 and document["persons"] >= 5
    # The person-level ways in are closed to a researcher.
    assert _batch(hub, "researcher", {"person_ids": [1]}).status_code == 403
    assert _batch(hub, "researcher", {"as_of": "2020-01-01"}).status_code == 422


def test_a_clinician_names_the_patients_and_the_audit_entry_names_them(
    hub: ServedHub, persons: dict[str, list[int]]
) -> None:
    refused = _batch(hub, "clinician", {})
    assert refused.status_code == 422 and "person_ids" in refused.json()["detail"]
    assert _batch(hub, "clinician", {"person_ids": persons["living"][:21]}).status_code == 422  # 21 > 20
    named = persons["living"][:2]
    answer = _batch(hub, "clinician", {"person_ids": named})
    assert answer.status_code == 200, answer.text
    assert sorted(s["person_id"] for s in answer.json()["scores"]) == sorted(named)
    audit = httpx.get(f"{hub.url}/audit", params={"limit": 50}, headers=hub.headers("admin")).json()[
        "entries"
    ]
    scored = [e for e in audit if e["route"] == "/risk/{model}/batch" and e["status"] == 200 and e["persons"]]
    assert scored and scored[0]["persons"] == ",".join(map(str, named))
    assert scored[0]["subject"] == "clinician" and scored[0]["rows_touched"] == 2


def test_a_deceased_patient_is_not_scored_and_no_death_date_comes_back(
    hub: ServedHub, persons: dict[str, list[int]]
) -> None:
    assert persons["deceased"], "the generated hub must hold a deceased person for this attack"
    answer = _batch(hub, "clinician", {"person_ids": persons["deceased"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["scores"] == [] and answer.json()["not_scored"] == persons["deceased"]
    assert not DATE.search(answer.text)


def test_stepping_as_of_day_by_day_learns_at_most_a_few_months_and_is_cut_off(
    hub: ServedHub, persons: dict[str, list[int]]
) -> None:
    """The probe that dated a diagnosis to the day: the same patient at consecutive index dates."""
    target = persons["living"][5]
    headers = hub.headers("clinician")
    answers: dict[str, tuple[str, float]] = {}
    statuses = []
    day = date(2022, 11, 20)
    for _ in range(90):
        day += timedelta(days=1)
        answer = httpx.post(
            f"{hub.url}/risk/t2dm/batch", json={"person_ids": [target], "as_of": day.isoformat()},
            headers=headers, timeout=60,
        )  # fmt: skip
        statuses.append(answer.status_code)
        if answer.status_code == 200:
            row = answer.json()["scores"][0]
            answers[day.isoformat()] = (row["index_date"], row["risk"])
    assert set(statuses) <= {200, 429}
    assert 429 in statuses, "ninety daily probes were all answered"
    # Every answer is about the first day of a month, and at most three distinct months were seen.
    index_dates = {index_date for index_date, _ in answers.values()}
    assert all(d.endswith("-01") for d in index_dates)
    assert len(index_dates) <= 3
    # Once cut off, a new month stays refused; a month already seen is still answered.
    assert statuses[-1] == 429
    again = httpx.post(
        f"{hub.url}/risk/t2dm/batch", json={"person_ids": [target], "as_of": "2022-12-15"}, headers=headers
    )
    assert again.status_code == 200


def test_no_route_a_researcher_may_call_returns_a_person_id(hub: ServedHub) -> None:
    spec = httpx.get(f"{hub.url}/openapi.json").json()
    headers = hub.headers("researcher")
    called = 0
    for path, operations in spec["paths"].items():
        for method in operations:
            url = hub.url + path.replace("{model}", "t2dm").replace("{region}", "seoul")
            body = {"builtin": "type-2-diabetes"} if path == "/cohorts/count" else {}
            kwargs = {"json": body} if method == "post" else {}
            answer = httpx.request(method.upper(), url, headers=headers, timeout=120, **kwargs)  # type: ignore[arg-type]
            assert answer.status_code < 500, f"{method} {path}: {answer.status_code}"
            if answer.status_code == 200:
                called += 1
                assert "person_id" not in answer.text, f"{method} {path} returned a person id"
    assert called >= 4
