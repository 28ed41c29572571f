"""What a hub computes on its own CDM: suppressed concept counts, training rows, validation metrics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from healthmesh.cdm import connect
from healthmesh.errors import FederationError
from healthmesh.federation.cdm_features import cdm_training_frame
from healthmesh.federation.cdm_tasks import hub_concept_counts, hub_validation_metrics
from healthmesh.federation.guard import SUPPRESSED
from healthmesh.federation.hubs import combine_counts
from healthmesh.federation.logreg import LogisticParams
from healthmesh.federation.preprocess import agree_preprocessor, summarise_columns
from healthmesh.privacy.release import Release

Factory = Callable[[str, int, int], Path]
RELEASE = Release(b"federation-test-release-key-0123", 5)


def test_counts_match_the_database_and_small_cells_are_suppressed(hub_factory: Factory) -> None:
    db = hub_factory("gwangju", 150, 1)
    counts, touched = hub_concept_counts(str(db), {"concept_ids": [201826]}, RELEASE)
    with connect(db, read_only=True) as hub:
        expected = hub.scalar(
            "SELECT count(DISTINCT person_id) FROM condition_occurrence WHERE condition_concept_id = 201826"
        )
    assert expected == touched and abs(counts["persons"] - expected) <= RELEASE.max_noise
    cells = {k: v for k, v in counts.items() if k != "persons"}
    assert all(v == SUPPRESSED or v >= 5 for v in cells.values())
    released = sum(v for v in cells.values() if v != SUPPRESSED)
    assert released <= expected + RELEASE.max_noise * len(cells)
    # No line of the sex x age table may hold exactly one withheld non-empty cell (subtraction).
    for sex in ("female", "male", "other"):
        line = [v for k, v in cells.items() if k.startswith(f"sex={sex}|")]
        assert line.count(SUPPRESSED) != 1 or sex == "other"


def test_the_same_persons_get_the_same_noise_whatever_the_concepts(hub_factory: Factory) -> None:
    db = hub_factory("gwangju", 150, 1)
    one, _ = hub_concept_counts(str(db), {"concept_ids": [201826]}, RELEASE)
    again, _ = hub_concept_counts(str(db), {"concept_ids": [201826, 201826]}, RELEASE)
    other_key, _ = hub_concept_counts(
        str(db), {"concept_ids": [201826]}, Release(b"another-hub-key-0123456789abcdef")
    )
    assert one == again
    assert one != other_key or one["persons"] == SUPPRESSED


def test_a_tiny_cohort_is_suppressed_entirely(hub_factory: Factory) -> None:
    db = hub_factory("busan", 12, 3)
    counts, _ = hub_concept_counts(str(db), {"concept_ids": [201826], "characterize": False}, RELEASE)
    with connect(db, read_only=True) as hub:
        n = hub.scalar("SELECT count(DISTINCT person_id) FROM condition_occurrence")
    assert list(counts) == ["persons"]
    assert counts["persons"] == SUPPRESSED or (n >= 5 and abs(counts["persons"] - n) <= 3)


def test_bad_count_requests_are_refused(hub_factory: Factory, tmp_path: Path) -> None:
    db = hub_factory("gyeonggi", 20, 2)
    with pytest.raises(FederationError, match="concept_ids"):
        hub_concept_counts(str(db), {"concept_ids": []}, RELEASE)
    with pytest.raises(FederationError, match="not found"):
        hub_concept_counts(str(tmp_path / "missing.duckdb"), {"concept_ids": [1]}, RELEASE)


def test_combined_counts_flag_lower_bounds() -> None:
    totals = combine_counts({"a": {"persons": 12, "x": SUPPRESSED}, "b": {"persons": 30, "x": 7}})
    assert totals["persons"] == {"count": 42, "complete": True, "suppressed_at": []}
    assert totals["x"] == {"count": 7, "complete": False, "suppressed_at": ["a"]}


def test_diabetes_rows_and_external_validation(hub_factory: Factory) -> None:
    db = hub_factory("gwangju", 200, 5)
    X, y = cdm_training_frame(db, {"risk-task": "diabetes-onset-5y"})
    assert len(X) == len(y) == 200 and set(np.unique(y)) == {0, 1}
    assert {"age", "male", "bmi", "hypertension"} <= set(X.columns)
    spec = agree_preprocessor([summarise_columns(X)])
    bmi = spec.feature_names.index("bmi")
    coef = np.zeros(len(spec.feature_names))
    coef[bmi] = 2.0  # BMI drives onset in the fixture: a model on it alone must discriminate
    metrics, rows = hub_validation_metrics(
        {"db": str(db)},
        {"source": "cdm", "risk-task": "diabetes-onset-5y"},
        LogisticParams(coef, -1.0),
        spec,
        RELEASE,
    )
    assert rows == 200 and metrics["withheld"] == 0.0
    assert metrics["auroc"] > 0.7
    # Released, not exact: within the noise, and the rate is the released counts' ratio.
    assert abs(metrics["positives"] - int(y.sum())) <= RELEASE.max_noise
    assert abs(metrics["num-examples"] - 200) <= RELEASE.max_noise
    assert metrics["observed-rate"] == round(metrics["positives"] / metrics["num-examples"], 3)
    with pytest.raises(FederationError, match="risk task 'no-such-task'"):
        cdm_training_frame(db, {"risk-task": "no-such-task"})


def test_risk_package_task_rows_on_a_generated_hub(generated_hub: Path) -> None:
    X, y = cdm_training_frame(generated_hub, {"risk-task": "diabetes"})  # = the risk package's t2dm-3y
    assert len(X) == len(y) > 100 and 0 < y.sum() < len(y)
    assert "age" in X.columns and X.notna().all().all()
