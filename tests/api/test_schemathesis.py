"""Property-based run of schemathesis over the hub's OpenAPI description: no answer is a 5xx."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings

from healthmesh.api import ROLES, HubConfig, TokenIssuer, create_app

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
