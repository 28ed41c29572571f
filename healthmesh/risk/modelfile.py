"""Models as data: a fitted pipeline exported to JSON (+ LightGBM's own text model), loaded without code.

A model folder holds ``model.json`` (preprocessing parameters, coefficients or the name of the booster
file, feature names, task facts) and, for gradient-boosted trees, ``model.lgb.txt``. Nothing is pickled,
so a hub can load a model trained elsewhere without running code from the file. ``model_digest`` is the
SHA-256 over these files; the registry keeps it, and ``load_model`` refuses a folder whose digest
differs from the registry's entry. A tree model is checked (``treecheck``) before LightGBM reads it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from healthmesh.errors import ModelError
from healthmesh.risk.treecheck import check_tree_model, trial_load

if TYPE_CHECKING:  # loaded where used: a service that scores a logistic model never needs them
    import lightgbm as lgb
    from sklearn.pipeline import Pipeline

__all__ = [
    "FORMAT",
    "MODEL_FILES",
    "SafeModel",
    "export_pipeline",
    "load_model",
    "model_digest",
    "save_model",
]

FORMAT = "healthmesh-risk-model/1"
BOOSTER_FILE = "model.lgb.txt"
MODEL_FILES = ("model.json", BOOSTER_FILE)


@dataclass
class SafeModel:
    """A risk model as plain parameters: preprocessing, then a linear model or a LightGBM booster."""

    kind: str  # "logistic" or "lightgbm"
    input_kind: str  # "table" (a DataFrame of raw columns) or "sparse" (named covariates)
    preprocessing: dict[str, Any]
    feature_names: list[str]
    coef: list[float] = field(default_factory=list)
    intercept: float = 0.0
    booster: lgb.Booster | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    # -- preprocessing -------------------------------------------------------------------------
    def transform_table(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw table columns -> the model's design matrix (impute, scale, one-hot), from stored parameters."""
        parts: list[np.ndarray] = []
        num = self.preprocessing.get("numeric")
        if num and num["columns"]:
            block = np.empty((len(frame), len(num["columns"])))
            for j, column in enumerate(num["columns"]):
                values = (
                    pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
                    if column in frame
                    else np.full(len(frame), np.nan)
                )
                values = np.where(np.isnan(values), num["fill"][j], values)
                block[:, j] = (values - num["mean"][j]) / num["scale"][j]
            parts.append(block)
        cat = self.preprocessing.get("categorical")
        if cat and cat["columns"]:
            for j, column in enumerate(cat["columns"]):
                categories = cat["categories"][j]
                if column in frame:
                    raw = frame[column]
                    text = raw.where(raw.notna(), None).map(
                        lambda v: None if v is None else _category_text(v)
                    )
                    text = text.where(text.notna(), cat["fill"][j])
                else:
                    text = pd.Series([cat["fill"][j]] * len(frame))
                onehot = np.zeros((len(frame), len(categories)))
                lookup = {c: i for i, c in enumerate(categories)}
                codes = text.map(lookup)
                rows = np.flatnonzero(codes.notna().to_numpy())
                onehot[rows, codes.iloc[rows].to_numpy(dtype=int)] = 1.0
                parts.append(onehot)
        if not parts:
            return np.zeros((len(frame), 0))
        return np.hstack(parts)

    @cached_property
    def _scale(self) -> np.ndarray:
        return np.asarray(self.preprocessing["sparse"]["scale"], dtype=float)

    @cached_property
    def _scaled_coef(self) -> np.ndarray:
        # The max-abs scaling folded into the coefficients: one mat-vec on raw covariates, no scaled copy.
        return np.asarray(self.coef, dtype=float) / self._scale

    def transform_sparse(self, matrix: sp.csr_matrix | np.ndarray) -> sp.csr_matrix | np.ndarray:
        """Named covariates (columns in ``feature_names`` order) -> scaled by the stored max-abs values.

        A dense array (one patient's row) stays dense: cheaper than sparse bookkeeping for one row.
        """
        if isinstance(matrix, np.ndarray):
            return matrix * (1.0 / self._scale)  # the sparse path's arithmetic, to the last bit
        return sp.csr_matrix(matrix @ sp.diags(1.0 / self._scale))

    def design(self, data: pd.DataFrame | sp.spmatrix | np.ndarray) -> np.ndarray | sp.csr_matrix:
        if self.input_kind == "table":
            if not isinstance(data, pd.DataFrame):
                raise ModelError("this model reads a table; pass a DataFrame of its columns")
            return self.transform_table(data)
        if isinstance(data, pd.DataFrame):
            raise ModelError("this model reads CDM covariates; pass their sparse matrix")
        return self.transform_sparse(data if isinstance(data, np.ndarray) else sp.csr_matrix(data))

    # -- prediction ----------------------------------------------------------------------------
    def linear_predictor(self, design: np.ndarray | sp.csr_matrix) -> np.ndarray:
        if self.kind == "logistic":
            return np.asarray(design @ np.asarray(self.coef)).ravel() + self.intercept
        assert self.booster is not None
        return np.asarray(self.booster.predict(design, raw_score=True)).ravel()

    def predict_proba(self, data: pd.DataFrame | sp.spmatrix | np.ndarray) -> np.ndarray:
        """Predicted risk of the outcome for each row."""
        if self.kind == "logistic" and self.input_kind == "sparse" and not isinstance(data, pd.DataFrame):
            eta = np.asarray(data @ self._scaled_coef).ravel() + self.intercept
        else:
            eta = self.linear_predictor(self.design(data))
        return 1.0 / (1.0 + np.exp(-eta))

    def contributions(self, data: pd.DataFrame | sp.spmatrix | np.ndarray) -> np.ndarray:
        """Per-row, per-feature contributions to the log-odds (coef x value, or LightGBM SHAP values)."""
        design = self.design(data)
        if self.kind == "logistic":
            dense = design.toarray() if isinstance(design, sp.spmatrix | sp.sparray) else np.asarray(design)
            # Relative to the training mean (stored for CDM models; table designs are centred already).
            center = self.preprocessing.get("sparse", {}).get("mean")
            if center is not None:
                dense = dense - np.asarray(center)[None, :] / self._scale[None, :]
            return dense * np.asarray(self.coef)[None, :]
        assert self.booster is not None
        contrib = np.asarray(self.booster.predict(design, pred_contrib=True))
        return contrib[:, :-1]

    # -- serialisation -------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kind": self.kind,
            "input_kind": self.input_kind,
            "preprocessing": self.preprocessing,
            "feature_names": self.feature_names,
            "coef": self.coef,
            "intercept": self.intercept,
            "booster_file": BOOSTER_FILE if self.kind == "lightgbm" else None,
            "meta": self.meta,
        }


def _category_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _floats(values: Any) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=float).ravel()]


def export_pipeline(pipeline: Pipeline, input_kind: str, feature_names: list[str]) -> SafeModel:
    """Read the parameters out of a fitted pipeline ("pre" step, then "model") into a ``SafeModel``."""
    pre = pipeline.named_steps["pre"]
    estimator = pipeline.named_steps["model"]
    preprocessing: dict[str, Any] = {}
    design_names: list[str]
    if input_kind == "table":
        design_names = []
        for name, transformer, columns in pre.transformers_:
            if name == "num":
                imputer, scaler = transformer.named_steps["impute"], transformer.named_steps["scale"]
                preprocessing["numeric"] = {
                    "columns": list(columns),
                    "fill": _floats(imputer.statistics_),
                    "mean": _floats(scaler.mean_),
                    "scale": _floats(scaler.scale_),
                }
                design_names += list(columns)
            elif name == "cat":
                imputer, onehot = transformer.named_steps["impute"], transformer.named_steps["onehot"]
                categories = [[_category_text(c) for c in cats] for cats in onehot.categories_]
                preprocessing["categorical"] = {
                    "columns": list(columns),
                    "fill": [_category_text(v) for v in imputer.statistics_],
                    "categories": categories,
                }
                design_names += [
                    f"{c}={v}" for c, cats in zip(columns, categories, strict=True) for v in cats
                ]
    else:
        preprocessing["sparse"] = {"scale": _floats(np.where(pre.scale_ == 0, 1.0, pre.scale_))}
        design_names = list(feature_names)
    if hasattr(estimator, "booster_"):
        return SafeModel(
            kind="lightgbm",
            input_kind=input_kind,
            preprocessing=preprocessing,
            feature_names=design_names,
            booster=estimator.booster_,
        )
    return SafeModel(
        kind="logistic",
        input_kind=input_kind,
        preprocessing=preprocessing,
        feature_names=design_names,
        coef=_floats(estimator.coef_),
        intercept=float(np.ravel(estimator.intercept_)[0]),
    )


def _clean(value: Any) -> Any:
    """JSON without NaN: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def model_digest(folder: Path) -> str:
    """SHA-256 over the model files present in ``folder`` (names and bytes, in a fixed order)."""
    digest = hashlib.sha256()
    for name in MODEL_FILES:
        path = Path(folder) / name
        if path.exists():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _load_booster(path: Path, n_features: int) -> lgb.Booster:
    """The booster of ``path``, after its structure passed the check and a fenced trial parse scored a row."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise ModelError(
            f"a LightGBM model needs {path.name}; it is missing from {str(path.parent)!r}"
        ) from None
    except UnicodeDecodeError:
        raise ModelError(f"{path.name}: has bytes outside ASCII; refusing the model") from None
    check_tree_model(text, n_features)
    trial_load(text)
    import lightgbm as lgb

    return lgb.Booster(model_str=text)


def save_model(folder: Path, model: SafeModel) -> str:
    """Write ``model.json`` (and ``model.lgb.txt``) and a manifest; returns the model digest."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps(_clean(model.to_json()), indent=1) + "\n")
    booster_path = folder / BOOSTER_FILE
    if model.kind == "lightgbm":
        assert model.booster is not None
        booster_path.write_text(model.booster.model_to_string())
    elif booster_path.exists():
        booster_path.unlink()
    digest = model_digest(folder)
    (folder / "manifest.json").write_text(json.dumps({"format": FORMAT, "sha256": digest}, indent=1) + "\n")
    return digest


def load_model(folder: Path, expected_sha256: str) -> SafeModel:
    """Load a model folder after checking its digest against ``expected_sha256`` (from the hub's registry).

    A folder's own manifest is no evidence (whoever swaps the files rewrites it too): only the
    registry's digest is.
    """
    folder = Path(folder)
    path = folder / "model.json"
    if not path.is_file():
        raise ModelError(
            f"no model.json in {str(folder)!r}; give the folder written by risk train or fit-table"
        )
    actual = model_digest(folder)
    if not expected_sha256 or not hmac.compare_digest(actual, expected_sha256):
        raise ModelError(
            f"model in {str(folder)!r} fails its integrity check (sha256 {actual[:12]}... expected "
            f"{expected_sha256[:12]}...); refusing it. Re-copy the model folder from its source hub"
        )
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ModelError(f"model.json in {str(folder)!r} is not valid JSON: {error}") from error
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise ModelError(f"model format {str(found)[:40]!r} is not {FORMAT!r}; retrain with this healthmesh")
    if not isinstance(doc.get("feature_names"), list):
        raise ModelError(f"model.json in {str(folder)!r} has no feature_names list; not a healthmesh model")
    booster = None
    if doc.get("kind") == "lightgbm":
        booster = _load_booster(folder / BOOSTER_FILE, len(doc["feature_names"]))
    elif doc.get("kind") != "logistic":
        raise ModelError(f"unknown model kind {str(doc.get('kind'))[:40]!r} in {str(path)!r}")
    try:
        return SafeModel(
            kind=doc["kind"],
            input_kind=doc["input_kind"],
            preprocessing=doc["preprocessing"],
            feature_names=list(doc["feature_names"]),
            coef=[float(c) for c in doc.get("coef") or []],
            intercept=float(doc.get("intercept") or 0.0),
            booster=booster,
            meta=doc.get("meta") or {},
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError(
            f"model.json in {str(folder)!r} is malformed ({type(error).__name__}: {error})"
        ) from None
