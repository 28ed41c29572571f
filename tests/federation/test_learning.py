"""Federated preprocessing and logistic regression agree with their pooled, centralised versions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from healthmesh.errors import FederationError
from healthmesh.federation.logreg import LogisticParams, local_train, predict_proba, roc_auc
from healthmesh.federation.preprocess import agree_preprocessor, summarise_columns
from healthmesh.federation.sitedata import split_rows
from healthmesh.risk.tables import make_preprocessor, read_table


def _sites(site_tables: dict[str, Path]) -> dict[str, pd.DataFrame]:
    return {name: read_table(path, "target").X for name, path in site_tables.items()}


def test_agreed_preprocessing_matches_pooled_make_preprocessor(site_tables: dict[str, Path]) -> None:
    frames = _sites(site_tables)
    spec = agree_preprocessor([summarise_columns(X) for X in frames.values()])
    pooled = pd.concat(frames.values(), ignore_index=True)
    expected = make_preprocessor(pooled).fit_transform(pooled)
    got = spec.transform(pooled)
    assert spec.feature_names == ["age", "chol", "smoker=current", "smoker=former", "smoker=never"]
    assert got.shape == expected.shape
    # age has no missing values: identical; chol is imputed with a median read off quantile curves.
    np.testing.assert_allclose(got[:, 0], expected[:, 0], atol=1e-9)
    np.testing.assert_allclose(got[:, 1], expected[:, 1], atol=0.05)
    np.testing.assert_array_equal(got[:, 2:], expected[:, 2:])


def test_rare_categories_are_not_released(site_tables: dict[str, Path]) -> None:
    X = _sites(site_tables)["north"].copy()
    X.loc[:2, "smoker"] = "unusual"
    summary = summarise_columns(X, min_cell=5)
    assert "unusual" not in summary["categorical"]["smoker"]["counts"]


def test_columns_typed_differently_at_two_hubs_are_refused() -> None:
    a = summarise_columns(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    b = summarise_columns(pd.DataFrame({"x": ["low", "high", "low"]}))
    with pytest.raises(FederationError, match="numbers at some hubs and text at others"):
        agree_preprocessor([a, b])


def test_gradient_steps_reach_the_sklearn_solution(site_tables: dict[str, Path]) -> None:
    table = read_table(site_tables["north"], "target")
    spec = agree_preprocessor([summarise_columns(table.X)])
    X, y = spec.transform(table.X), table.y.astype(float)
    C = 1.0
    params = local_train(LogisticParams.zeros(X.shape[1]), X, y, steps=3000, lr=1.0, l2=1.0 / (C * len(y)))
    reference = LogisticRegression(C=C, max_iter=5000, tol=1e-10).fit(X, y)
    np.testing.assert_allclose(params.coef, reference.coef_[0], atol=2e-3)
    assert params.intercept == pytest.approx(reference.intercept_[0], abs=2e-3)


def test_proximal_term_keeps_parameters_near_the_global_model(site_tables: dict[str, Path]) -> None:
    table = read_table(site_tables["south"], "target")
    X = agree_preprocessor([summarise_columns(table.X)]).transform(table.X)
    start = LogisticParams.zeros(X.shape[1])
    free = local_train(start, X, table.y.astype(float), steps=50, lr=1.0)
    held = local_train(start, X, table.y.astype(float), steps=50, lr=1.0, proximal_mu=5.0)
    assert np.linalg.norm(held.as_vector()) < 0.5 * np.linalg.norm(free.as_vector())


def test_roc_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    score = np.round(rng.random(300) + 0.3 * y, 1)  # many ties
    assert roc_auc(y, score) == pytest.approx(roc_auc_score(y, score))
    assert np.isnan(roc_auc(np.ones(5), np.arange(5.0)))


def test_split_is_stratified_and_repeatable(site_tables: dict[str, Path]) -> None:
    table = read_table(site_tables["north"], "target")
    first = split_rows(table.X, table.y, test_fraction=0.25, seed=7)
    again = split_rows(table.X, table.y, test_fraction=0.25, seed=7)
    pd.testing.assert_frame_equal(first.X_test, again.X_test)
    assert len(first.y_test) == 40
    assert abs(first.y_test.mean() - first.y_train.mean()) < 0.05
    assert predict_proba(LogisticParams.zeros(1), np.zeros((2, 1))).tolist() == [0.5, 0.5]
