"""One patient's features are the same whether built in the batch or from that patient's FHIR Bundle."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from healthmesh.cdm import HubDatabase, connect, create_hub
from healthmesh.errors import ModelError
from healthmesh.risk import BundleScorer, load_task, score_person, train_task
from healthmesh.risk.features import build_features, load_rows

from .bundles import patient_bundle
from .conftest import hub_release

ingest = pytest.importorskip("healthmesh.ingest")
synth = pytest.importorskip("healthmesh.ingest.synth")

KEY = b"k" * 32
AS_OF = date(2024, 6, 30)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small hub made by the platform's generator and ingest, and its Bulk NDJSON."""
    folder = tmp_path_factory.mktemp("generated")
    synth.generate_population("busan", 30, 7, folder / "ndjson")
    db = create_hub(str(folder / "busan.duckdb"))
    ingest.ingest_paths(db, [folder / "ndjson"], "busan", KEY)
    db.close()
    return folder / "busan.duckdb", folder / "ndjson"


def _named(db: HubDatabase, person_ids: list[int]) -> dict[int, dict[str, float]]:
    settings = load_task("t2dm-3y").features.model_copy(update={"min_persons": 1})
    rows = db.df("SELECT person_id FROM person ORDER BY person_id")
    rows = rows[rows["person_id"].isin(person_ids)].reset_index(drop=True)
    rows.insert(0, "row_id", np.arange(len(rows)))
    rows["index_date"] = AS_OF
    load_rows(db, rows)
    matrix, names = build_features(db, settings, len(rows))
    dense = matrix.toarray()
    return {
        int(pid): {names[j]: float(dense[i, j]) for j in np.flatnonzero(dense[i])}
        for i, pid in enumerate(rows["person_id"])
    }


@pytest.mark.parametrize("index", [0, 5, 17])
def test_features_identical_in_batch_and_from_bundle(generated: tuple[Path, Path], index: int) -> None:
    hub_path, ndjson = generated
    _, bundle = patient_bundle(ndjson, index)
    scratch = create_hub(":memory:")
    report = ingest.ingest_bundle(scratch, json.dumps(bundle), hub="busan", secret_key=KEY)
    assert report.committed
    (person_id,) = [row[0] for row in scratch.rows("SELECT person_id FROM person")]
    single = _named(scratch, [person_id])[person_id]
    with connect(hub_path, read_only=True) as db:
        everyone = [row[0] for row in db.rows("SELECT person_id FROM person")]
        batch = _named(db, everyone)[person_id]
    scratch.close()
    assert len(single) > 5
    assert single == batch


@pytest.fixture(scope="module")
def model_dir(toy_hubs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle-model") / "t2dm"
    with connect(toy_hubs["gyeonggi"], read_only=True) as db:
        train_task(db, "t2dm-3y", out, models=["logistic-l1"], release=hub_release())
    return out


def test_bundle_score_equals_batch_score(generated: tuple[Path, Path], model_dir: Path) -> None:
    hub_path, ndjson = generated
    scorer = BundleScorer(model_dir)
    try:
        for index in (1, 2):
            _, bundle = patient_bundle(ndjson, index)
            from_bundle = scorer.score(bundle, as_of=AS_OF)
            # The scorer's own random key gives other person ids; the risk must not change.
            scratch = create_hub(":memory:")
            ingest.ingest_bundle(scratch, json.dumps(bundle), hub="busan", secret_key=KEY)
            (person_id,) = [row[0] for row in scratch.rows("SELECT person_id FROM person")]
            scratch.close()
            with connect(hub_path, read_only=True) as db:
                from_batch = score_person(db, model_dir, person_id, AS_OF)
            np.testing.assert_allclose(from_bundle["risk"], from_batch["risk"], rtol=1e-12)
            assert from_bundle["top_features"] == from_batch["top_features"]
    finally:
        scorer.close()


@pytest.mark.parametrize("task", ["t2dm-3y", "mi-stroke-5y", "ckd-3y"])
def test_tasks_read_the_platform_cdm(generated: tuple[Path, Path], task: str) -> None:
    # The platform's generator and ingest give the CDM shape every hub has; each task's SQL runs on it.
    from healthmesh.cohorts import build_cohort
    from healthmesh.risk.train import task_data

    hub_path, _ = generated
    with connect(hub_path, read_only=True) as db:
        target = build_cohort(db, load_task(task).target())
        people = db.scalar("SELECT count(*) FROM person")
        data = task_data(
            db,
            load_task(task).model_copy(
                update={"features": load_task(task).features.model_copy(update={"min_persons": 1})}
            ),
        )
    counts = [step["persons"] for step in target.attrition]
    assert counts == sorted(counts, reverse=True) and counts[0] <= people
    assert 0 < len(data.rows) <= target.persons
    assert "age" in data.names and any(name.startswith("value:LOINC:") for name in data.names)
    assert set(np.unique(data.y)) <= {0, 1}


def test_cli_scores_a_bundle_file(generated: tuple[Path, Path], model_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from healthmesh.cli import app

    _, bundle = patient_bundle(generated[1], 3)
    path = tmp_path / "patient.json"
    path.write_text(json.dumps(bundle))
    result = CliRunner().invoke(
        app, ["risk", "score", "--model", str(model_dir), "--bundle", str(path), "--as-of", "2024-06-30"]
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert 0.0 < answer["risk"] < 1.0 and answer["task"] == "t2dm-3y" and answer["index_date"] == "2024-06-30"
    assert answer["top_features"] and {"feature", "description", "value", "contribution"} <= set(
        answer["top_features"][0]
    )


def test_in_memory_features_equal_batch_for_every_patient(
    generated: tuple[Path, Path], model_dir: Path
) -> None:
    # The scoring fast path (in-memory mapping and covariates) against the batch feature SQL, everyone.
    hub_path, ndjson = generated
    with connect(hub_path, read_only=True) as db:
        batch = _named(db, [row[0] for row in db.rows("SELECT person_id FROM person")])
    scorer = BundleScorer(model_dir)
    scratch = create_hub(":memory:")  # ingested with the hub's key, to learn each Bundle's person_id
    try:
        for index in range(len(batch)):
            _, bundle = patient_bundle(ndjson, index)
            found = scorer.features(bundle, AS_OF)
            assert found is not None, f"patient {index} left the fast path"
            index_date, named = found
            before = {row[0] for row in scratch.rows("SELECT person_id FROM person")}
            ingest.ingest_bundle(scratch, json.dumps(bundle), hub="busan", secret_key=KEY)
            (person_id,) = {row[0] for row in scratch.rows("SELECT person_id FROM person")} - before
            assert index_date == AS_OF
            assert {k: v for k, v in named.items() if v != 0} == batch[person_id]
    finally:
        scratch.close()
        scorer.close()


def _alike(answer: dict, reference: dict) -> None:
    """The same answer; sums of the same terms in another order may differ in the last bits."""
    assert {k: v for k, v in answer.items() if k not in ("risk", "top_features")} == {
        k: v for k, v in reference.items() if k not in ("risk", "top_features")
    }
    assert answer["risk"] == pytest.approx(reference["risk"], rel=1e-12)
    assert [(f["feature"], f["value"]) for f in answer["top_features"]] == [
        (f["feature"], f["value"]) for f in reference["top_features"]
    ]
    assert [f["contribution"] for f in answer["top_features"]] == pytest.approx(
        [f["contribution"] for f in reference["top_features"]], rel=1e-12
    )


def test_fast_and_reference_paths_answer_alike(generated: tuple[Path, Path], model_dir: Path) -> None:
    _, ndjson = generated
    fast, reference = BundleScorer(model_dir), BundleScorer(model_dir, fast=False)
    try:
        for index in (0, 4, 9):
            _, bundle = patient_bundle(ndjson, index)
            for as_of in (AS_OF, None):  # None: the patient's last observed day
                _alike(fast.score(bundle, as_of), reference.score(bundle, as_of))
        # A Bundle with a resource sent twice is decided by the database mapping, with the same answer.
        _, bundle = patient_bundle(ndjson, 2)
        twice = {**bundle, "entry": [*bundle["entry"], bundle["entry"][-1]]}
        assert fast.features(twice) is None
        _alike(fast.score(twice, AS_OF), reference.score(bundle, AS_OF))
        # A Bundle the database mapping rejects gets its one-line reason.
        broken = json.loads(json.dumps(bundle))
        next(
            e
            for e in broken["entry"]
            if e["resource"]["resourceType"] == "Condition" or e["resource"]["resourceType"] == "Observation"
        )["resource"]["subject"] = {"reference": "Patient/nobody"}
        with pytest.raises(ModelError, match="could not be loaded: .*nobody"):
            fast.score(broken, AS_OF)
    finally:
        fast.close()
        reference.close()
