"""A live network for the module: a coordinator and three always-on hubs, as real processes.

The hubs are copies of the session's generated hubs (1,500 people each), each in its own folder
with its own key file; each runs ``healthmesh hub serve --network URL``. gwangju's policy does
not answer 'characterize' (so it refuses characterizations and counts by sex and age band);
busan's runs only counts at once (a cohort attrition waits for its admin there). The coordinator
serves HTTPS (a CA made for the module) on 127.0.0.10, the hubs on 127.0.0.11-13.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from healthmesh.network.launch import LiveNetwork, start_live_network

GWANGJU_POLICY = """
operations = ["count", "summary", "train", "evaluate", "validate"]
min_cell = 5
"""
BUSAN_POLICY = """
operations = ["count", "characterize", "summary", "train", "evaluate", "validate"]
min_cell = 5
[studies]
run_at_once = ["count"]
"""


@pytest.fixture(scope="module")
def live(generated_hubs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNetwork]:
    root = tmp_path_factory.mktemp("live-network")
    sources = {
        "gwangju": generated_hubs["gyeonggi"],
        "gyeonggi": generated_hubs["gyeonggi"],
        "busan": generated_hubs["busan"],
    }
    dbs = {}
    for name, source in sources.items():
        folder = root / "data" / name
        folder.mkdir(parents=True)
        dbs[name] = folder / "hub.duckdb"
        shutil.copy(source, dbs[name])
    policies = {"gwangju": root / "gwangju-policy.toml", "busan": root / "busan-policy.toml"}
    policies["gwangju"].write_text(GWANGJU_POLICY)
    policies["busan"].write_text(BUSAN_POLICY)
    # Each process on an address of its own (127/8 is all loopback on Linux): nothing relies on one host.
    network = start_live_network(
        root / "run",
        dbs,
        researchers=("alice", "bob"),
        policies=policies,
        host="127.0.0.10",
        hub_hosts={"gwangju": "127.0.0.11", "gyeonggi": "127.0.0.12", "busan": "127.0.0.13"},
    )
    try:
        yield network
    finally:
        network.stop()
