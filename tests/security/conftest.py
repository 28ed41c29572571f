"""One served hub (generated population, t2dm model) for the request and least-privilege attacks.

Starting ``healthmesh hub serve`` and training its model is the costly part of those modules; the
attacks there only read and are refused, so one process serves both, stopped at the session's end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .fixtures_requests import ServedHub, serve_hub


@pytest.fixture(scope="session")
def served_hub(generated_hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedHub]:
    served = serve_hub(tmp_path_factory.mktemp("served-hub"), generated_hub)
    yield served
    log = served.stop()
    assert "Traceback" not in log, log[-3000:]
