"""One report for training and validation: metrics.json, ROC and calibration plots, the model card."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from healthmesh.risk.card import write_card, write_json
from healthmesh.risk.metrics import evaluate, evaluate_groups
from healthmesh.risk.modelfile import SafeModel
from healthmesh.risk.plots import write_plots

__all__ = ["new_model_id", "now_iso", "top_features", "write_report"]


def new_model_id(name: str) -> str:
    """A unique model id: the task or table name and a random suffix."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)[:60]
    return f"{safe}-{uuid.uuid4().hex[:10]}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def top_features(model: SafeModel, k: int = 15) -> list[dict[str, Any]]:
    """The strongest features: absolute coefficients (on scaled features) or LightGBM gain."""
    if model.kind == "logistic":
        weights = np.asarray(model.coef)
    else:
        assert model.booster is not None
        weights = np.asarray(model.booster.feature_importance(importance_type="gain"), dtype=float)
    order = np.argsort(-np.abs(weights))[:k]
    return [{"name": model.feature_names[i], "weight": float(weights[i])} for i in order if weights[i] != 0]


def write_report(
    out: Path,
    y: np.ndarray,
    p: np.ndarray,
    *,
    extra: dict[str, Any],
    card: dict[str, Any],
    groups: dict[str, np.ndarray] | None = None,
    title: str,
    card_stem: str = "card",
) -> dict[str, Any]:
    """Evaluate, then write ``metrics.json``, ``roc.png``, ``calibration.png`` and the card into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, Any] = dict(evaluate(y, p))
    metrics.update(extra)
    if groups:
        metrics["subgroups"] = evaluate_groups(y, p, groups)
    plots = write_plots(y, p, out, title, float(metrics["auroc"]))
    write_json(out / "metrics.json", metrics)
    card = dict(card)
    card["evaluation"] = {
        "design": card.get("evaluation_design", ""),
        "metrics": {k: v for k, v in metrics.items() if k != "subgroups"},
        "subgroups": metrics.get("subgroups", {}),
        "plots": plots,
    }
    card.pop("evaluation_design", None)
    write_card(out, card, card_stem)
    return metrics
