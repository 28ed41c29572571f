"""The PLP metric set on simulated risks whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from healthmesh.risk import METRIC_KEYS, evaluate, evaluate_groups


@pytest.fixture(scope="module")
def calibrated() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    risk = 1 / (1 + np.exp(-rng.normal(-1.5, 1.2, 20_000)))
    return (rng.random(risk.size) < risk).astype(int), risk


def test_discrimination_matches_scikit_learn(calibrated: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = calibrated
    m = evaluate(y, p)
    assert set(m) == set(METRIC_KEYS)
    np.testing.assert_allclose(m["auroc"], roc_auc_score(y, p), rtol=1e-12)
    np.testing.assert_allclose(m["auprc"], average_precision_score(y, p), rtol=1e-12)
    assert m["auroc_ci_low"] < m["auroc"] < m["auroc_ci_high"]
    assert m["auroc_ci_high"] - m["auroc_ci_low"] < 0.03  # 20,000 rows: a narrow interval


def test_a_calibrated_model_looks_calibrated(calibrated: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = calibrated
    m = evaluate(y, p)
    np.testing.assert_allclose(m["calibration_slope"], 1.0, atol=0.06)
    np.testing.assert_allclose(m["calibration_intercept"], 0.0, atol=0.05)
    np.testing.assert_allclose(m["eo_ratio"], 1.0, atol=0.04)
    assert m["ici"] < 0.01 and m["e90"] < 0.03 and m["e_avg"] == m["ici"]
    np.testing.assert_allclose(m["brier"], np.mean((p - y) ** 2))


def test_miscalibration_shows(calibrated: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = calibrated
    logit = np.log(p / (1 - p))
    overfit = evaluate(y, 1 / (1 + np.exp(-2 * logit)))  # too extreme: slope about 1/2
    np.testing.assert_allclose(overfit["calibration_slope"], 0.5, atol=0.05)
    doubled = evaluate(y, np.clip(p * 2, 0, 1))
    assert doubled["eo_ratio"] > 1.7 and doubled["calibration_in_the_large"] > 0.1 and doubled["ici"] > 0.1


def test_groups_report_small_levels_as_counts_only(calibrated: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = calibrated
    labels = np.full(y.size, "big", dtype=object)
    labels[np.flatnonzero(y == 1)[:3]] = "tiny"  # 3 outcomes and 20 non-outcomes
    labels[np.flatnonzero(y == 0)[:20]] = "tiny"
    groups = evaluate_groups(y, p, {"site": labels})
    assert groups["site"]["big"]["n"] == y.size - 23 and "auroc" in groups["site"]["big"]
    assert groups["site"]["tiny"] == {"n": 23, "n_outcomes": 3, "note": "fewer than 5 per class"}
