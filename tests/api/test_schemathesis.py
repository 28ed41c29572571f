"""Property-based run of schemathesis over the hub's OpenAPI description: no answer is a 5xx."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from healthmesh.api import ROLES, HubConfig, TokenIssuer, create_app
from healthmesh.api.limits import MAX_JSON_DEPTH, body_limit
from healthmesh.cohorts.definition import LIMITS

EXAMPLES = 10


@pytest.fixture(scope="module")
def fuzzed_app(
    generated_hub: Path,
    api_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
    make_hub_config: Callable[[Path, Path | None], HubConfig],
) -> Iterator[FastAPI]:
    target = tmp_path_factory.mktemp("fuzzed-hub") / "hub.duckdb"
    shutil.copyfile(generated_hub, target)
    app = create_app(make_hub_config(target, api_model))
    yield app
    app.state.hub.close()


def test_no_server_errors(fuzzed_app: FastAPI) -> None:
    """Every operation, a bounded number of generated requests each, with a token of every role."""
    config = fuzzed_app.state.hub.config
    # A valid token that carries every role, so each route is exercised past its guard.
    token = TokenIssuer(config.keys, config.hub, config.clients).issue("fuzzer", ROLES)
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
        )
        def check(case: Any) -> None:
            response = case.call(headers={"Authorization": f"Bearer {token}"})
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
                )

        check()
    assert operations >= 14
    assert not failures, "\n".join(failures[:10])


LIMIT_EXAMPLES = 12


def _padded(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes (one long string)."""
    return b'{"pad": "' + b"x" * max(0, size - 11) + b'"}'


def _bodies(limit: int) -> st.SearchStrategy[bytes]:
    """Bodies at the edges of the limits: sizes around the route's, nesting around MAX_JSON_DEPTH."""
    depth = st.sampled_from([*range(MAX_JSON_DEPTH - 3, MAX_JSON_DEPTH + 4), 2_000, 10_000])
    return st.one_of(
        st.integers(-64, 64).map(lambda delta: _padded(limit + delta)),
        depth.map(lambda d: b"[" * d + b"]" * d),
        depth.map(lambda d: b'{"definition": ' + b'{"a": ' * d + b"1" + b"}" * d + b"}"),
        st.binary(min_size=0, max_size=256),
    )


def _cohort(rules: int, concepts: int) -> bytes:
    definition = {
        "name": "edge",
        "concept_sets": {"visit": [{"concept_id": 9202 + i} for i in range(concepts)]},
        "entry": {"domain": "visit", "concept_set": "visit"},
        "inclusion_rules": [{"name": f"rule {i}", "age_min": i % 80} for i in range(rules)],
    }
    return json.dumps({"definition": definition}).encode()


def _post_edge_bodies(client: TestClient, path: str, headers: dict[str, str], failures: list[str]) -> None:
    @given(body=_bodies(body_limit(path)))
    # The edges themselves, whatever the draw: one byte over the limit, and nesting far past it.
    @example(body=_padded(body_limit(path) + 1))
    @example(body=b"[" * 10_000 + b"]" * 10_000)
    @example(body=b'{"definition": ' + b'{"a": ' * 10_000 + b"1" + b"}" * 10_001)
    @settings(
        max_examples=LIMIT_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
    )
    def check(body: bytes) -> None:
        answer = client.post(path, content=body, headers=headers)
        if answer.status_code >= 500:
            failures.append(f"POST {path} ({len(body)} bytes): {answer.status_code} {answer.text[:200]}")

    check()


def test_no_server_errors_with_bodies_up_to_the_limits(
    generated_hub: Path,
    api_model: Path,
    tmp_path: Path,
    make_hub_config: Callable[[Path, Path | None], HubConfig],
) -> None:
    """Every operation that takes a body, fed bodies at each limit's edge: none is answered 5xx."""
    target = tmp_path / "hub.duckdb"
    shutil.copyfile(generated_hub, target)
    app = create_app(make_hub_config(target, api_model))
    config = app.state.hub.config
    token = TokenIssuer(config.keys, config.hub, config.clients).issue("fuzzer", ROLES)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    client = TestClient(app)
    schema = client.get("/openapi.json").json()
    posts = [path.replace("{model}", "t2dm") for path, ops in schema["paths"].items() if "post" in ops]
    assert len(posts) >= 4
    failures: list[str] = []
    rules = st.sampled_from([LIMITS["inclusion_rules"] - 1, LIMITS["inclusion_rules"] + 1, 1_000])
    concepts = st.sampled_from([LIMITS["concepts"], LIMITS["concepts"] + 1])

    @given(rules=rules, concepts=concepts)
    @settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def check_cohort(rules: int, concepts: int) -> None:
        answer = client.post("/cohorts/count", content=_cohort(rules, concepts), headers=headers)
        if answer.status_code >= 500:
            failures.append(
                f"cohort of {rules} rules, {concepts} concepts: {answer.status_code} {answer.text[:200]}"
            )

    try:
        for path in posts:
            _post_edge_bodies(client, path, headers, failures)
        check_cohort()
    finally:
        app.state.hub.close()
    assert not failures, "\n".join(failures[:10])
