"""A small model registry: one JSON file listing model versions with digest, data fingerprint and metrics.

The registry is the hub's trust anchor: ``load_registered`` refuses a model folder whose files no
longer hash to the digest recorded when the model was registered.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from healthmesh.errors import ModelError
from healthmesh.risk.modelfile import SafeModel, load_model, model_digest

__all__ = [
    "REGISTRY_FILE",
    "SUMMARY_METRICS",
    "default_registry",
    "find_entry",
    "list_entries",
    "load_registered",
    "register",
]

REGISTRY_FILE = "registry.json"
SUMMARY_METRICS = (  # the figures a registry entry, a listing or a report shows
    "auroc",
    "auroc_ci_low",
    "auroc_ci_high",
    "auprc",
    "brier",
    "calibration_slope",
    "eo_ratio",
    "n",
    "n_outcomes",
)


def default_registry(model_folder: Path) -> Path:
    """The registry beside a model folder: ``<parent>/registry.json``."""
    return Path(model_folder).resolve().parent / REGISTRY_FILE


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"models": []}
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ModelError(
            f"registry {str(path)!r} is not valid JSON: {error}; restore it from backup"
        ) from error
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), list):
        raise ModelError(f"registry {str(path)!r} has no 'models' list; it is not a healthmesh registry")
    return doc


def list_entries(path: Path) -> list[dict[str, Any]]:
    """All registered model versions, oldest first."""
    return list(_read(Path(path))["models"])


def register(
    path: Path,
    *,
    folder: Path,
    model_id: str,
    name: str,
    hub: str | None,
    data_fingerprint: str,
    metrics: dict[str, Any],
    card: str = "card.json",
) -> dict[str, Any]:
    """Record a new version of model ``name``; returns the entry (with its version number and digest)."""
    path = Path(path)
    doc = _read(path)
    version = 1 + max((e["version"] for e in doc["models"] if e.get("name") == name), default=0)
    entry = {
        "model_id": model_id,
        "name": name,
        "version": version,
        "hub": hub,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "path": os.path.relpath(Path(folder).resolve(), path.resolve().parent),
        "sha256": model_digest(folder),
        "data_fingerprint": data_fingerprint,
        "metrics": {k: metrics.get(k) for k in SUMMARY_METRICS if k in metrics},
        "card": card,
    }
    doc["models"] = [e for e in doc["models"] if e.get("model_id") != model_id] + [entry]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=lambda v: None) + "\n")
    tmp.replace(path)
    return entry


def find_entry(path: Path, model_id: str) -> dict[str, Any] | None:
    """The registry entry of ``model_id``, or None."""
    for entry in _read(Path(path))["models"]:
        if entry.get("model_id") == model_id:
            return entry
    return None


def load_registered(folder: Path, registry: Path | None = None) -> SafeModel:
    """Load a model folder that the hub's registry lists, with the digest recorded there.

    ``registry`` defaults to the registry beside the folder. A model missing from it is refused,
    whatever its own manifest says: the registry is the only trust anchor.
    """
    folder = Path(folder)
    path = Path(registry) if registry is not None else default_registry(folder)
    model_json = folder / "model.json"
    if not model_json.is_file():
        raise ModelError(
            f"no model.json in {str(folder)!r}; give the folder written by risk train or fit-table"
        )
    if not path.is_file():
        raise ModelError(
            f"no registry at {str(path)!r}; a hub loads only models its registry.json lists "
            "(`healthmesh risk train` registers the models it writes)"
        )
    try:
        meta = json.loads(model_json.read_text()).get("meta", {})
    except (json.JSONDecodeError, AttributeError) as error:
        raise ModelError(f"model.json in {str(folder)!r} is not a JSON object: {error}") from error
    model_id = meta.get("model_id") if isinstance(meta, dict) else None
    entry = find_entry(path, str(model_id))
    if entry is None or not isinstance(entry.get("sha256"), str):
        raise ModelError(
            f"model {str(model_id)[:80]!r} is not in registry {str(path)!r}; register it before this hub uses it"
        )
    return load_model(folder, expected_sha256=entry["sha256"])
