"""The candidate models and their choice by cross-validation on training data only.

Candidates: L1- and L2-regularised logistic regression and LightGBM gradient-boosted trees, each with
a small hyper-parameter grid. Preprocessing is a step of the pipeline, so every inner fold fits it on
its own training rows (no leakage). Everything takes a seed, so runs repeat exactly.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from lightgbm import LGBMClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler

from healthmesh.errors import ModelError
from healthmesh.risk.names import DEFAULT_MODELS, MODEL_NAMES
from healthmesh.risk.tables import make_preprocessor

__all__ = ["DEFAULT_MODELS", "MODEL_NAMES", "check_outcomes", "choose_model", "model_label"]

# Smallest number of outcomes (and of non-outcomes) that still gives every fold some of each.
MIN_PER_CLASS = 10


def check_outcomes(y: np.ndarray, what: str, folds: int = 5) -> None:
    """Refuse, with a clear reason, data with too few outcomes or non-outcomes to fit and cross-validate."""
    positives = int(np.sum(y))
    negatives = int(len(y) - positives)
    need = max(MIN_PER_CLASS, 2 * folds)
    if positives < need or negatives < need:
        raise ModelError(
            f"{what} has {positives} outcomes and {negatives} non-outcomes; at least {need} of each are "
            "needed to fit and cross-validate a model. Use more data, a longer time at risk or a broader outcome"
        )


def _grid(name: str, seed: int, n_jobs: int) -> dict[str, list[Any]]:
    if name == "logistic-l1":
        # saga: steady on scaled sparse designs where liblinear's L1 path crawls at weak penalties.
        model = LogisticRegression(l1_ratio=1.0, solver="saga", tol=1e-3, max_iter=1000, random_state=seed)
        return {"model": [model], "model__C": [0.01, 0.1, 1.0]}
    if name == "logistic-l2":
        # liblinear: fast and steady on small and sparse designs; a large intercept_scaling keeps the
        # intercept nearly unpenalised.
        model = LogisticRegression(
            l1_ratio=0.0, solver="liblinear", intercept_scaling=10.0, max_iter=500, random_state=seed
        )
        return {"model": [model], "model__C": [0.01, 0.1, 1.0]}
    if name == "lightgbm":
        model = LGBMClassifier(
            n_estimators=150,
            learning_rate=0.05,
            min_child_samples=20,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            reg_lambda=1.0,
            random_state=seed,
            n_jobs=n_jobs,
            verbose=-1,
        )
        return {"model": [model], "model__num_leaves": [7, 31]}
    raise ModelError(f"unknown model {name!r}; choose among {', '.join(MODEL_NAMES)}")


# Inner-CV AUROCs closer than this are a tie; the tie goes to the better log loss (better calibrated).
AUROC_TIE = 0.005


def _best_auroc_then_log_loss(results: dict[str, Any]) -> int:
    """Index of the grid point to refit: best AUROC, near-ties broken by log loss."""
    auc = np.asarray(results["mean_test_auc"], dtype=float)
    nll = np.asarray(results["mean_test_nll"], dtype=float)
    tied = np.flatnonzero(auc >= np.nanmax(auc) - AUROC_TIE)
    return int(tied[np.nanargmax(nll[tied])])


def model_label(params: dict[str, Any]) -> str:
    """A short name for a chosen grid point: ``logistic-l1 (C=0.1)`` or ``lightgbm (num_leaves=7)``."""
    model = params["model"]
    settings = ", ".join(f"{k.split('__', 1)[1]}={v}" for k, v in sorted(params.items()) if k != "model")
    if isinstance(model, LogisticRegression):
        family = "logistic-l1" if model.l1_ratio == 1.0 else "logistic-l2"
    else:
        family = "lightgbm"
    return f"{family} ({settings})" if settings else family


def choose_model(
    X: pd.DataFrame | sp.spmatrix,
    y: np.ndarray,
    *,
    models: tuple[str, ...] | list[str] = DEFAULT_MODELS,
    seed: int = 0,
    inner_folds: int = 3,
    n_jobs: int = 1,
) -> tuple[Pipeline, str, float]:
    """Choose model and hyper-parameters by inner stratified CV AUROC on (X, y), refit on all of it.

    Returns the fitted pipeline, its label and the inner-CV AUROC of the choice.
    """
    pre = make_preprocessor(X) if isinstance(X, pd.DataFrame) else MaxAbsScaler()
    pipeline = Pipeline([("pre", pre), ("model", LogisticRegression())])
    grids = [_grid(name, seed, n_jobs) for name in models]
    search = GridSearchCV(
        pipeline,
        grids,
        scoring={"auc": "roc_auc", "nll": "neg_log_loss"},
        cv=StratifiedKFold(n_splits=inner_folds, shuffle=True, random_state=seed),
        refit=_best_auroc_then_log_loss,
        n_jobs=1,
        error_score="raise",
    )
    with warnings.catch_warnings():
        # Convergence chatter from liblinear/lbfgs on strongly regularised grid points is not news.
        warnings.simplefilter("ignore")
        try:
            search.fit(X, y)
        except ValueError as error:
            raise ModelError(f"model fitting failed: {error}") from error
    best = int(search.best_index_)
    return (
        search.best_estimator_,
        model_label(search.best_params_),
        float(search.cv_results_["mean_test_auc"][best]),
    )
