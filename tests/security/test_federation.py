"""Attacks on the federation, against real Flower processes on loopback with TLS.

One network for the module (a SuperLink, one hub's SuperNode and the hub's app process), started
with ``HEALTHMESH_SECRET_KEY`` in the environment as a careless operator would. The attacker holds
the CA certificate and can submit runs: a bundle with its own ClientApp, and a code-free bundle
whose ServerApp sends whatever messages it likes (``fixtures_federation.attack_app``).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from healthmesh.federation.network import FlowerNetwork, free_port, make_node_keys
from healthmesh.federation.preprocess import agree_preprocessor, summarise_columns
from healthmesh.federation.sitedata import load_site_rows, split_rows
from healthmesh.privacy.release import Release

from .fixtures_federation import make_attack_table, run_attack, submit, write_foreign_bundle

pytestmark = pytest.mark.slow

TESTS_DIR = Path(__file__).resolve().parents[1]
SECRET = "f3a9c1e07b5d42e8a6c9d0b1e2f3a4b5c6d7e8f9a0b1c2d3"
JOB = {"source": "table", "target": "target"}
MIN_CELL = 5


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlowerNetwork]:
    root = tmp_path_factory.mktemp("federation-attacks")
    table = make_attack_table(root / "site.csv")
    saved = {k: os.environ.get(k) for k in ("HEALTHMESH_SECRET_KEY", "PYTHONPATH")}
    os.environ["HEALTHMESH_SECRET_KEY"] = SECRET
    # The attacker's ServerApp runs at the coordinator, which imports it from its own path.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), saved["PYTHONPATH"]) if p)
    net = FlowerNetwork(root / "net", {"hub": {"table": str(table)}}, tls=True)
    try:
        net.start()
        yield net
    finally:
        net.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _train_part(network: FlowerNetwork) -> tuple[Any, np.ndarray, np.ndarray]:
    X, y = load_site_rows(network.sites["hub"], JOB)
    split = split_rows(X, y)
    return split.X_train, split.y_train, split.train_ids


def _train_message(spec: dict[str, Any], coef: list[float], intercept: float) -> dict[str, Any]:
    config = {
        "job": json.dumps(JOB),
        "preprocessor": json.dumps(spec),
        "lr": 1.0,
        "local-steps": 1,
        "l2": 0.0,
    }
    return {"type": "train", "config": config, "arrays": {"coef": coef, "intercept": [intercept]}}


@pytest.fixture(scope="module")
def attack(network: FlowerNetwork) -> dict[str, Any]:
    """One run of the attacker's ServerApp: every message of every attack below."""
    X_train, _, _ = _train_part(network)
    honest = agree_preprocessor([summarise_columns(X_train)]).to_dict()
    # The attack of the issue: 'age' declared categorical, one indicator per observed value.
    ages = sorted({repr(float(a)) for a in X_train["age"]})
    categorical = {
        **honest,
        "numeric": ["chol"],
        "fill": honest["fill"][1:],
        "mean": honest["mean"][1:],
        "scale": honest["scale"][1:],
        "categorical": ["age", *honest["categorical"]],
        "categorical_fill": [ages[0], *honest["categorical_fill"]],
        "categories": [ages, *honest["categories"]],
    }
    n_cat = len(ages) + sum(len(c) for c in honest["categories"]) + 1
    # Within the declared types, a category of three persons added by hand.
    rare = {**honest, "categories": [[*honest["categories"][0], "rare"]]}
    n_rare = len(honest["numeric"]) + len(rare["categories"][0])
    messages = [
        {"type": "query.health"},
        {"type": "query.summary", "config": {"job": json.dumps(JOB)}},
        # sigmoid(+-10) saturates enough for the gradients to round to the exact (n, positives).
        _train_message(categorical, [0.0] * n_cat, 10.0),
        _train_message(categorical, [0.0] * n_cat, -10.0),
        _train_message(categorical, [0.0] * n_cat, 40.0),
        _train_message(honest, [0.0] * (n_rare - 1), 40.0),
        _train_message(rare, [0.7] * n_rare, 0.0),
    ]
    started = time.perf_counter()
    steps = run_attack(network, network.workdir, messages)
    return {"steps": [s[0] for s in steps], "seconds": time.perf_counter() - started, "ages": ages}


def test_foreign_clientapp_bundle_runs_at_no_hub(network: FlowerNetwork, tmp_path: Path) -> None:
    app_dir = write_foreign_bundle(tmp_path)
    job_file, marker = tmp_path / "job.json", tmp_path / "foreign-ran"
    job_file.write_text("{}")
    log = submit(network, app_dir, {"job-file": str(job_file), "marker-file": str(marker)})

    replies = json.loads(job_file.with_suffix(".result.json").read_text())
    assert replies, log[-2000:]
    for reply in replies:
        assert reply["rows"] is None  # no reply carries rows
        assert "carries files of its own (foreign.py)" in reply["error"]
    assert not marker.exists()  # the bundle's code never ran at the hub
    assert network.supernodes[0].app is not None
    assert "refused run" in network.supernodes[0].app.log_text()


def test_unregistered_supernode_cannot_join(network: FlowerNetwork, tmp_path: Path) -> None:
    private_key, _ = make_node_keys(tmp_path / "intruder")  # a valid key pair, never registered
    assert oct(private_key.stat().st_mode & 0o777) == "0o600"
    # One intruder with that key, one without any (a SuperNode that registers itself).
    intruders: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    for name, key in (("unregistered-key", private_key), ("no-key", None)):
        args = network.supernode_args(free_port(), {"table": "/dev/null"}, key)
        log_path = tmp_path / f"{name}.log"
        with log_path.open("wb") as handle:
            process = subprocess.Popen(
                [*args, "--max-retries", "1"], stdout=handle, stderr=subprocess.STDOUT, env=network.cli_env()
            )
        intruders[name] = (process, log_path)
    for name, (process, log_path) in intruders.items():
        try:
            code = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
        log = log_path.read_text()
        assert code != 0, name
        assert "SuperNode ID" not in log, name  # it never got a node id
        assert "Failed to initialize the connection to the SuperLink" in log, name


def test_another_local_process_cannot_take_the_hubs_tasks(network: FlowerNetwork) -> None:
    from flwr.proto.runtime_pb2 import AcquireTaskRequest  # type: ignore[attr-defined]
    from flwr.supercore.constant import TaskType
    from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor
    from flwr.supercore.runtime import RuntimeHttpClient

    node = network.supernodes[0]
    client = RuntimeHttpClient.from_server_address(
        server_address=f"{network.host}:{node.port}",
        insecure=True,
        root_certificates=None,
        interceptors=[RuntimeVersionHttpInterceptor(component_name="SuperExec")],
    )
    try:
        with pytest.raises(httpx.HTTPStatusError) as refused:  # unsigned: not the hub's app process
            client.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP]))
    finally:
        client.close()
    assert refused.value.response.status_code in (401, 403)


def test_clientapp_environment_has_no_hub_secret(network: FlowerNetwork, attack: dict[str, Any]) -> None:
    health = attack["steps"][0]
    assert health["error"] is None
    seen = json.loads(health["content"]["health"]["items"]["env"])
    assert "PATH" in seen and not [name for name in seen if name.startswith("HEALTHMESH_")]
    app = network.supernodes[0].app
    assert app is not None
    assert app.process.poll() is None  # one app process served every message of the run, and stays up
    for pid in (app.process.pid, network.supernodes[0].process.pid):
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"HEALTHMESH_SECRET_KEY" not in environ and SECRET.encode() not in environ
    assert oct((network.hub_dir("hub") / "release.key").stat().st_mode & 0o777) == "0o600"


def test_training_attack_recovers_no_small_group(network: FlowerNetwork, attack: dict[str, Any]) -> None:
    plus, minus, huge, big, rare = attack["steps"][2:7]
    # The categorical declaration is refused, with a one-line reason.
    for reply in (plus, minus):
        assert reply["content"] is None
        assert "numeric column 'age' is declared categorical" in reply["error"]
        assert "\n" not in reply["error"]
    # A start intercept far out of bounds is refused before any row is read, whatever the preprocessing.
    for reply in (huge, big):
        assert reply["content"] is None and "start parameters out of bounds" in reply["error"]

    # Within the policy, a one-hot cell of three persons is not encoded: its coefficient comes back
    # exactly as sent (the rows moved it by nothing), so it tells nothing about them.
    assert rare["error"] is None
    coef = rare["content"]["arrays"]["items"]["coef"]["values"]
    assert coef[-1] == 0.7
    assert any(c != 0.7 for c in coef[:-1])  # the other parameters did learn

    # num-examples is a count like any other: released, not exact.
    X_train, y_train, ids = _train_part(network)
    key = bytes.fromhex((network.hub_dir("hub") / "release.key").read_text())
    release = Release(key, min_count=MIN_CELL)
    examples = rare["content"]["metrics"]["items"]["num-examples"]
    assert examples == release.count(len(y_train), release.person_key(ids))
    assert abs(examples - len(y_train)) <= release.max_noise


def _counts(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = [("rows", summary["rows"])]
    for column, part in summary["numeric"].items():
        found += [(f"{column}.present", part["present"]), (f"{column}.missing", part["missing"])]
        found += [(f"{column}={v}", c) for v, c in part["value_counts"].items()]
    for column, part in summary["categorical"].items():
        found += [(f"{column}.missing", part["missing"]), (f"{column}.suppressed", part["suppressed"])]
        found += [(f"{column}={v}", c) for v, c in part["counts"].items()]
    return found


def test_summary_carries_no_count_below_the_threshold(network: FlowerNetwork, attack: dict[str, Any]) -> None:
    reply = attack["steps"][1]
    assert reply["error"] is None
    summary = json.loads(reply["content"]["summary"]["items"]["columns"])
    counts = _counts(summary)
    small = [(name, value) for name, value in counts if value is not None and 0 < value < MIN_CELL]
    assert small == []
    X_train, _, _ = _train_part(network)
    truth = summarise_columns(X_train)  # what the hub would have sent without the release path
    assert 0 < truth["categorical"]["smoker"]["suppressed"] < MIN_CELL
    assert summary["categorical"]["smoker"]["suppressed"] is None  # the suppressed count is a count
    assert 0 < truth["numeric"]["chol"]["missing"] < MIN_CELL
    assert summary["numeric"]["chol"]["missing"] is None
