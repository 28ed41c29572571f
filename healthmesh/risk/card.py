"""Model cards (JSON and Markdown): task, data, hub, period, features, metrics and limits.

A card of hub data is written from released figures (see ``report``); a count the release path
withheld is ``null`` in the JSON and "withheld" on the page.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["render_markdown", "write_card", "write_json"]

_SHOWN = (
    ("auroc", "AUROC"),
    ("auroc_ci_low", "AUROC 95% CI low"),
    ("auroc_ci_high", "AUROC 95% CI high"),
    ("auprc", "AUPRC"),
    ("brier", "Brier"),
    ("scaled_brier", "scaled Brier"),
    ("calibration_in_the_large", "calibration-in-the-large"),
    ("calibration_intercept", "calibration intercept"),
    ("calibration_slope", "calibration slope"),
    ("eo_ratio", "E/O"),
    ("e_avg", "Eavg (ICI)"),
    ("e90", "E90"),
    ("e_max", "Emax"),
)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        return _clean(value.item())
    return value


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write JSON with NaN as null (strict JSON that any hub can read)."""
    Path(path).write_text(json.dumps(_clean(document), indent=1, allow_nan=False) + "\n")


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


_COUNTS = frozenset({"persons", "rows", "outcomes", "n", "n_outcomes", "n_train"})


def _count(value: Any) -> str:
    return "withheld" if value is None else _fmt(value)


def render_markdown(card: dict[str, Any]) -> str:
    """The card as a short Markdown page."""
    lines = [f"# Model card: {card.get('title', card.get('model_id', 'model'))}", ""]
    for key in ("model_id", "created", "hub", "model", "positive_label", "target_rule"):
        if card.get(key) is not None:
            lines.append(f"- **{key.replace('_', ' ')}**: {_fmt(card[key])}")
    task = card.get("task") or {}
    if task:
        lines += ["", "## Task", ""]
        lines += [
            f"- **{k.replace('_', ' ')}**: {_fmt(v)}" for k, v in task.items() if not isinstance(v, dict)
        ]
    data = card.get("data") or {}
    if data:
        lines += ["", "## Data", ""]
        lines += [
            f"- **{k.replace('_', ' ')}**: {_count(v) if k in _COUNTS else _fmt(v)}"
            for k, v in data.items()
            if not isinstance(v, dict | list)
        ]
    evaluation = card.get("evaluation") or {}
    metrics = evaluation.get("metrics") or {}
    if metrics:
        lines += ["", "## Performance", "", f"Design: {evaluation.get('design', '')}", ""]
        lines += ["| metric | value |", "| --- | --- |"]
        lines += [f"| {label} | {_fmt(metrics.get(key))} |" for key, label in _SHOWN if key in metrics]
    subgroups = evaluation.get("subgroups") or {}
    for group, levels in subgroups.items():
        lines += ["", f"### By {group.replace('_', ' ')}", "", "| level | n | outcomes | AUROC | E/O |"]
        lines.append("| --- | --- | --- | --- | --- |")
        for level, m in levels.items():
            lines.append(
                f"| {level} | {_count(m.get('n'))} | {_count(m.get('n_outcomes'))} | {_fmt(m.get('auroc'))} | {_fmt(m.get('eo_ratio'))} |"
            )
    features = card.get("features") or {}
    if features:
        lines += [
            "",
            "## Features",
            "",
            f"{features.get('count', 0)} features. {features.get('description', '')}",
        ]
        top = features.get("top") or []
        if top:
            lines += ["", "| feature | weight |", "| --- | --- |"]
            lines += [f"| {f['name']} | {_fmt(f['weight'])} |" for f in top]
    limits = card.get("limits") or []
    if limits:
        lines += ["", "## Limits", ""] + [f"- {item}" for item in limits]
    return "\n".join(lines) + "\n"


def write_card(folder: Path, card: dict[str, Any], stem: str = "card") -> None:
    """Write ``<stem>.json`` and ``<stem>.md`` into ``folder``."""
    write_json(Path(folder) / f"{stem}.json", card)
    (Path(folder) / f"{stem}.md").write_text(render_markdown(_clean(card)))
