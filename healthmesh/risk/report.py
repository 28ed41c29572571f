"""One report for training and validation: metrics.json, ROC and calibration plots, the model card.

A report on hub data (``release`` given) is the released document: every count goes through the
hub's release path keyed by its persons, subgroups of few persons are withheld, the figures that are
functions of counts are recomputed from released counts, metrics are rounded and plots drawn coarse
(``metrics.release_metrics``, ``plots``). ``metrics.json`` and the card are that document, checked by
``assert_release_safe``; the exact figures are not written anywhere, since the hub needs none of
them after the fit. A report on a flat table that is not hub data (``fit-table``) is exact.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from healthmesh.errors import ModelError, PrivacyError
from healthmesh.privacy.disclosure import assert_release_safe
from healthmesh.privacy.release import Release
from healthmesh.risk.card import write_card, write_json
from healthmesh.risk.metrics import evaluate, evaluate_groups, release_groups, release_metrics
from healthmesh.risk.modelfile import SafeModel
from healthmesh.risk.plots import write_plots

__all__ = ["RISK_COUNT_KEYS", "assert_report_safe", "new_model_id", "now_iso", "top_features", "write_report"]

#: The keys under which a report or card carries counts, beyond the platform's ``COUNT_KEYS``.
RISK_COUNT_KEYS = frozenset({"n", "n_outcomes", "n_train", "outcomes", "rows", "events", "persons"})


def assert_report_safe(document: Any, min_count: int) -> None:
    """``assert_release_safe``, and no count of 1 .. min_count - 1 under a report's own count keys."""
    assert_release_safe(document, min_count)
    if isinstance(document, dict):
        for key, value in document.items():
            if key in RISK_COUNT_KEYS and isinstance(value, int | float) and not isinstance(value, bool):
                if 0 < value < min_count:
                    raise PrivacyError(f"{key} = {value} is below the minimum cell count {min_count}")
            else:
                assert_report_safe(value, min_count)
    elif isinstance(document, list | tuple):
        for item in document:
            assert_report_safe(item, min_count)


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
    release: Release | None = None,
    persons: np.ndarray | None = None,
) -> dict[str, Any]:
    """Evaluate, then write ``metrics.json``, ``roc.png``, ``calibration.png`` and the card into ``out``.

    With ``release`` (hub data), ``persons`` gives each row's person id and every figure written is
    released; ``extra`` and ``card`` must hold released figures already. Returns what was written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y).astype(int)
    metrics: dict[str, Any]
    if release is not None:
        if persons is None or len(persons) != len(y):
            raise ModelError("a released report needs the person id of every row")
        persons = np.asarray(persons)
        keys = release.person_key(persons), release.person_key(persons[y == 1])
        metrics = release_metrics(dict(evaluate(y, p)), release, *keys)
    else:
        metrics = dict(evaluate(y, p))
    metrics.update(extra)
    if groups:
        metrics["subgroups"] = (
            release_groups(y, p, groups, persons, release)
            if release is not None and persons is not None
            else evaluate_groups(y, p, groups)
        )
    auroc = metrics.get("auroc")
    plots = [] if auroc is None else write_plots(y, p, out, title, float(auroc), coarse=release is not None)
    if release is not None:
        assert_report_safe(metrics, release.min_count)
    write_json(out / "metrics.json", metrics)
    card = dict(card)
    card["evaluation"] = {
        "design": card.get("evaluation_design", ""),
        "metrics": {k: v for k, v in metrics.items() if k != "subgroups"},
        "subgroups": metrics.get("subgroups", {}),
        "plots": plots,
    }
    card.pop("evaluation_design", None)
    if release is not None:
        assert_report_safe(card, release.min_count)
    write_card(out, card, card_stem)
    return metrics
