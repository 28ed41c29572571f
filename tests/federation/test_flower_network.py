"""The whole federation on loopback: real SuperLink and SuperNode processes, self-signed TLS.

Every reply that left a hub is read back from the hubs' audit files (written by the guard on the
ClientApp's reply path) and inspected here, independently of the guard: nothing may be row-shaped.
These are the slow tests of the folder (a few Flower runs, ~10 s per message round on 2 cores).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from healthmesh.cdm import connect
from healthmesh.federation import federated_count, federated_validate, start_hub_network, train_table
from healthmesh.federation.cdm_features import cdm_training_frame
from healthmesh.federation.cdm_tasks import hub_concept_counts
from healthmesh.federation.logreg import LogisticParams, local_train
from healthmesh.federation.preprocess import agree_preprocessor, summarise_columns
from healthmesh.federation.sitedata import split_rows
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


def test_hub_cdms_count_and_validate_over_tls(generated_hubs: dict[str, Path], tmp_path: Path) -> None:
    hubs = dict(generated_hubs)  # gyeonggi and busan, 1,500 generated people each
    # A model of the risk package's t2dm-3y task trained at gyeonggi alone, to validate at every hub.
    X, y = cdm_training_frame(hubs["gyeonggi"], {"risk-task": "t2dm-3y"})
    spec = agree_preprocessor([summarise_columns(X)])
    params = local_train(
        LogisticParams.zeros(len(spec.feature_names)),
        spec.transform(X),
        y.astype(float),
        steps=200,
        lr=1.0,
        l2=1e-3,
    )
    model = {
        "coef": params.coef.tolist(),
        "intercept": params.intercept,
        "preprocessor": spec.to_dict(),
        "data": {"source": "cdm", "risk-task": "t2dm-3y"},
    }

    audit = tmp_path / "audit"
    with start_hub_network(hubs, tmp_path / "network", tls=True, audit_dir=audit) as network:
        counts = federated_count(network, [201826])
        validation = federated_validate(network, model)
    assert not network.running

    direct = {name: hub_concept_counts(str(db), {"concept_ids": [201826]}, 5)[0] for name, db in hubs.items()}
    assert counts["per_site"] == direct
    assert counts["network"]["persons"]["count"] == sum(d["persons"] for d in direct.values())

    assert set(validation["per_site"]) == set(hubs)
    for metrics in validation["per_site"].values():
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
    assert validation["per_site"]["gyeonggi"]["num-examples"] == len(y)

    for site, db in hubs.items():
        with connect(db, read_only=True) as hub:
            persons = int(hub.scalar("SELECT count(*) FROM person"))
        n_rows = {persons, int(validation["per_site"][site]["num-examples"])}
        replies = audited_replies(audit, site)
        assert [r["message_type"] for r in replies] == ["query.count", "evaluate.validate"]
        for reply in replies:
            assert reply["error"] is None
            assert row_shaped_parts(reply["content"], n_rows) == []
