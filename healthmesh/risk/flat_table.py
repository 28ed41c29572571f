"""Risk models on a flat table: nested cross-validation, a safe model file, card, registry; validation elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from healthmesh.errors import ModelError
from healthmesh.risk.learners import DEFAULT_MODELS, check_outcomes, choose_model
from healthmesh.risk.modelfile import SafeModel, export_pipeline, save_model
from healthmesh.risk.registry import default_registry, load_registered, register
from healthmesh.risk.report import new_model_id, now_iso, top_features, write_report
from healthmesh.risk.tables import TableData, read_table

__all__ = ["OUTER_FOLDS", "fit_table", "outer_splitter", "validate_table"]

OUTER_FOLDS = 5


def outer_splitter(seed: int) -> StratifiedKFold:
    """The outer cross-validation of ``fit_table``: stratified 5-fold, shuffled with ``seed``."""
    return StratifiedKFold(n_splits=OUTER_FOLDS, shuffle=True, random_state=seed)


def _table_limits(data: TableData) -> list[str]:
    limits = [
        "Trained on one table; performance elsewhere is unknown until validated on that population.",
        "Missing values are imputed (median / most frequent) from the training data.",
    ]
    if data.dropped_columns:
        limits.append(f"Identifier or empty columns left out: {', '.join(data.dropped_columns)}.")
    if len(data.y) < 500:
        limits.append(f"Small data ({len(data.y)} rows): wide confidence intervals.")
    return limits


def fit_table(
    data: Path,
    target: str,
    out: Path,
    *,
    positive: str | None = None,
    seed: int = 0,
    models: tuple[str, ...] | list[str] = DEFAULT_MODELS,
    registry: Path | None = None,
) -> dict[str, Any]:
    """Fit, choose and evaluate a risk model on a flat table; write model, card and metrics.json to ``out``.

    Every outer fold chooses among ``models`` by inner CV on its training rows only; the out-of-fold
    predictions of those choices give the metrics. The saved model is the same choice made on all rows.
    """
    table = read_table(Path(data), target, positive)
    check_outcomes(table.y, f"table {table.source!r}", OUTER_FOLDS)
    oof = np.empty(len(table.y))
    choices: list[str] = []
    for train, test in outer_splitter(seed).split(table.X, table.y):
        pipeline, label, _ = choose_model(table.X.iloc[train], table.y[train], models=models, seed=seed)
        oof[test] = pipeline.predict_proba(table.X.iloc[test])[:, 1]
        choices.append(label)
    final, label, inner_auroc = choose_model(table.X, table.y, models=models, seed=seed)
    model = export_pipeline(final, "table", list(table.X.columns))
    model_id = new_model_id(Path(table.source).name.split(".")[0])
    model.meta = {
        "model_id": model_id,
        "label": label,
        "target": table.target,
        "positive_label": table.positive_label,
        "target_rule": table.target_rule,
        "columns": list(table.X.columns),
    }
    out = Path(out)
    save_model(out, model)
    # Check that the saved parameters reproduce the fitted pipeline before anyone relies on them.
    np.testing.assert_allclose(model.predict_proba(table.X), final.predict_proba(table.X)[:, 1], atol=1e-6)
    card = {
        "title": f"{table.target} from {table.source}",
        "model_id": model_id,
        "created": now_iso(),
        "hub": None,
        "model": label,
        "positive_label": table.positive_label,
        "target_rule": table.target_rule,
        "data": {
            "source": table.source,
            "fingerprint_sha256": table.fingerprint,
            "rows": len(table.y),
            "outcomes": int(table.y.sum()),
            "numeric_columns": len(table.numeric_columns),
            "categorical_columns": len(table.categorical_columns),
        },
        "features": {
            "count": len(model.feature_names),
            "description": "numeric columns median-imputed and standardised; text columns one-hot",
            "top": top_features(model),
        },
        "fold_choices": choices,
        "candidates": list(models),
        "evaluation_design": (
            f"stratified {OUTER_FOLDS}-fold cross-validation (seed {seed}); in each outer fold the model "
            "and its hyper-parameters are chosen by 3-fold CV on the training folds only"
        ),
        "limits": _table_limits(table),
    }
    extra = {
        "model": label,
        "fold_choices": choices,
        "inner_cv_auroc": inner_auroc,
        "positive_label": table.positive_label,
        "target_rule": table.target_rule,
        "evaluation": "nested cross-validation",
    }
    metrics = write_report(out, table.y, oof, extra=extra, card=card, title=str(card["title"]))
    register(
        Path(registry) if registry else default_registry(out),
        folder=out,
        model_id=model_id,
        name=f"table:{table.source}:{table.target}",
        hub=None,
        data_fingerprint=table.fingerprint,
        metrics=metrics,
    )
    return metrics


def _positive_for(model: SafeModel, positive: str | None) -> str | None:
    if positive is not None:
        return positive
    label = str(model.meta.get("positive_label", ""))
    return None if label in ("", "not 0") else label


def validate_table(
    model_dir: Path,
    data: Path,
    target: str,
    out: Path,
    *,
    positive: str | None = None,
    registry: Path | None = None,
) -> dict[str, Any]:
    """Apply a frozen table model to another table and write the same report to ``out``."""
    model = load_registered(Path(model_dir), registry)
    if model.input_kind != "table":
        raise ModelError(
            f"model in {str(model_dir)!r} was trained on a CDM; validate it with --db, not --data"
        )
    table = read_table(Path(data), target, _positive_for(model, positive))
    columns = list(model.meta.get("columns", []))
    missing = [c for c in columns if c not in table.X.columns]
    if columns and len(missing) == len(columns):
        raise ModelError(
            f"{str(data)!r} has none of the model's columns ({', '.join(columns[:8])}...); is it the right table?"
        )
    p = model.predict_proba(table.X)
    card = {
        "title": f"validation of {model.meta.get('model_id')} on {table.source}",
        "model_id": model.meta.get("model_id"),
        "created": now_iso(),
        "model": model.meta.get("label"),
        "positive_label": table.positive_label,
        "target_rule": table.target_rule,
        "data": {"source": table.source, "fingerprint_sha256": table.fingerprint, "rows": len(table.y)},
        "evaluation_design": "external validation of the frozen model (no refitting)",
        "limits": [f"Columns absent here and imputed: {', '.join(missing)}."] if missing else [],
    }
    extra = {
        "model": model.meta.get("label"),
        "model_id": model.meta.get("model_id"),
        "positive_label": table.positive_label,
        "target_rule": table.target_rule,
        "missing_columns": missing,
        "evaluation": "external validation",
    }
    return write_report(
        out, table.y, p, extra=extra, card=card, title=str(card["title"]), card_stem="validation_card"
    )
