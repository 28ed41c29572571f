"""The whole federation on loopback: real SuperLink and SuperNode processes, self-signed TLS.

Every reply that left a hub is read back from the hubs' audit files (written by the guard on the
ClientApp's reply path) and inspected here, independently of the guard: nothing may be row-shaped.
These are the slow tests of the folder (a few Flower runs, ~10 s per message round on 2 cores).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from healthmesh.cdm import connect
from healthmesh.config import Settings, hub_keys
from healthmesh.federation import federated_study, start_hub_network, train_table
from healthmesh.federation.cdm_tasks import hub_concept_counts
from healthmesh.federation.sitedata import split_rows
from healthmesh.privacy.release import Release
from healthmesh.risk.tables import read_table

pytestmark = pytest.mark.slow

IDENTIFIER = re.compile(r"\d{7,}|[0-9a-f]{16,}|@|\b(19|20)\d\d-[01]\d-[0-3]\d\b", re.IGNORECASE)


def _walk(value: Any, where: str = "$") -> Iterable[tuple[str, Any]]:
    if isinstance(value, str) and value[:1] in "[{":
        yield from _walk(json.loads(value), f"{where}<json>")  # inspect what the JSON holds
        return
    yield where, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{where}[{index}]")


def row_shaped_parts(content: dict[str, Any], row_counts: set[int]) -> list[str]:
    """The test's own inspection of one reply as the audit file holds it."""
    found = []
    for name, record in content.items():
        if record["type"] == "arrays":
            for key, array in record["items"].items():
                if set(array["shape"]) & row_counts or array["dtype"][:1] not in "fiub":
                    found.append(f"{name}.{key} shape {array['shape']} dtype {array['dtype']}")
        for where, value in _walk(record["items"], name):
            if isinstance(value, list) and len(value) in row_counts:
                found.append(f"{where}: list of {len(value)}")
            if isinstance(value, str) and IDENTIFIER.search(value):
                found.append(f"{where}: identifier-like {value[:40]!r}")
            if isinstance(value, dict) and any(
                re.search(r"person_?id|patient|name|birth", str(k)) for k in value
            ):
                found.append(f"{where}: personal key")
    return found


def no_process_mentions(folder: Path, within_s: float = 5.0) -> bool:
    """True when no running process has ``folder`` on its command line (children included).

    stop() SIGKILLs each process group last; on a busy host a killed process may take a moment to
    leave the process table, so the check polls briefly rather than reading one instant.
    """
    deadline = time.monotonic() + within_s
    while True:
        found = subprocess.run(["pgrep", "-f", str(folder)], capture_output=True, text=True)
        if found.returncode == 1:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def audited_replies(audit_dir: Path, site: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (audit_dir / f"{site}.jsonl").read_text().splitlines()]


def test_train_table_over_tls_sends_only_aggregates(site_tables: dict[str, Path], tmp_path: Path) -> None:
    audit, workdir, out = tmp_path / "audit", tmp_path / "network", tmp_path / "out"
    metrics = train_table(
        site_tables, "target", out, strategy="fedprox", rounds=1, tls=True, workdir=workdir, audit_dir=audit
    )

    saved = json.loads((out / "metrics.json").read_text())
    for key in ("federated_auroc", "federated_auroc_per_site", "centralised_auroc", "local_auroc_per_site"):
        assert saved[key] == metrics[key]
    assert set(saved["federated_auroc_per_site"]) == set(site_tables)
    assert 0.6 < saved["federated_auroc"] <= 1.0
    assert abs(saved["federated_auroc"] - saved["centralised_auroc"]) < 0.05
    assert saved["bytes_exchanged"] > 0 and saved["strategy"] == "fedprox" and saved["rounds"] == 1

    assert no_process_mentions(workdir)
    # TLS: the SuperLink served HTTPS with our certificate and every client was told to verify it.
    assert "insecure" not in (workdir / "logs" / "superlink.log").read_text().lower()
    assert "root-certificates" in (workdir / "flwr-home" / "config.toml").read_text()

    for site, path in site_tables.items():
        table = read_table(path, "target")
        split = split_rows(table.X, table.y)
        rows = {len(table.y), len(split.y_train), len(split.y_test)}
        replies = audited_replies(audit, site)
        kinds = [r["message_type"] for r in replies]
        assert kinds == ["query.summary", "train", "evaluate"], kinds
        for reply in replies:
            assert reply["error"] is None
            assert row_shaped_parts(reply["content"], rows) == []
        # Parameters left the hub as 5 coefficients and 1 intercept, never as anything per row.
        arrays = replies[1]["content"]["arrays"]["items"]
        assert arrays["coef"]["shape"] == [5] and arrays["intercept"]["shape"] == [1]


def test_hub_cdms_study_count_train_validate_over_tls(
    generated_hubs: dict[str, Path], tmp_path: Path
) -> None:
    hubs = dict(generated_hubs)  # gyeonggi and busan, 1,500 generated people each
    audit = tmp_path / "audit"
    with start_hub_network(hubs, tmp_path / "network", tls=True, audit_dir=audit) as network:
        started = [network.superlink, *network.supernodes]
        assert len(started) == 3  # one SuperLink, one SuperNode per hub
        study = federated_study(network, [201826], strategy="fedavg", rounds=1, risk_task="t2dm-3y")
    assert not network.running
    assert all(node is not None and node.process.poll() is not None for node in started)
    assert no_process_mentions(tmp_path / "network")

    # Each hub's release key is its own (as in its hub service): the same persons, the same noise.
    releases = {
        name: Release(hub_keys(Settings(secret_key=None), db).release, 5) for name, db in hubs.items()
    }
    direct = {
        name: hub_concept_counts(str(db), {"concept_ids": [201826]}, releases[name])[0]
        for name, db in hubs.items()
    }
    assert study["count"]["per_site"] == direct
    assert study["count"]["network"]["persons"]["count"] == sum(d["persons"] for d in direct.values())

    model = study["model"]
    assert len(model["coef"]) == len(model["feature_names"]) and "age" in model["feature_names"]
    assert set(model["evaluation"]) == set(hubs)
    validation = study["validation"]["per_site"]
    assert set(validation) == set(hubs)
    for metrics in validation.values():
        assert set(metrics) == {
            "num-examples",
            "withheld",
            "positives",
            "auroc",
            "brier",
            "log-loss",
            "observed-rate",
            "mean-predicted",
        }
        assert metrics["withheld"] == 0.0 and 0.5 < metrics["auroc"] <= 1.0

    for site, db in hubs.items():
        with connect(db, read_only=True) as hub:
            persons = int(hub.scalar("SELECT count(*) FROM person"))
        population = int(validation[site]["num-examples"])
        held_out = math.ceil(0.25 * population)
        rows = {persons, population, held_out, population - held_out}
        replies = audited_replies(audit, site)
        assert [r["message_type"] for r in replies] == [
            "query.count",
            "query.summary",
            "train",
            "evaluate",
            "evaluate.validate",
        ]
        for reply in replies:
            assert reply["error"] is None
            assert row_shaped_parts(reply["content"], rows) == []
