"""fit-table on the shared clinical tables: nested CV against plain scikit-learn, validation, safety."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline

from healthmesh.errors import ModelError
from healthmesh.risk import make_preprocessor, read_table
from healthmesh.risk.flat_table import fit_table, outer_splitter, validate_table
from healthmesh.risk.registry import load_registered

REQUIRED = {
    "auroc",
    "auroc_ci_low",
    "auroc_ci_high",
    "auprc",
    "brier",
    "calibration_slope",
    "calibration_intercept",
    "eo_ratio",
    "n",
    "n_outcomes",
    "model",
}


@pytest.fixture(scope="module")
def heart(shared_data: Path) -> Path:
    return shared_data / "clinical-tabular" / "uci-heart-disease-4sites"


@pytest.fixture(scope="module")
def cleveland_model(heart: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("models") / "cleveland"
    metrics = fit_table(heart / "processed.cleveland.data.csv", "target", out, seed=0)
    return out, metrics


def test_cleveland_matches_plain_logistic_regression(heart: Path, cleveland_model: tuple[Path, dict]) -> None:
    out, metrics = cleveland_model
    data = read_table(heart / "processed.cleveland.data.csv", "target")
    plain = make_pipeline(make_preprocessor(data.X), LogisticRegression(max_iter=1000))
    reference = cross_val_predict(plain, data.X, data.y, cv=outer_splitter(0), method="predict_proba")[:, 1]
    assert abs(metrics["auroc"] - roc_auc_score(data.y, reference)) < 0.02
    assert metrics["auroc_ci_low"] < metrics["auroc"] < metrics["auroc_ci_high"]
    written = json.loads((out / "metrics.json").read_text())
    assert REQUIRED <= set(written)
    assert written["n"] == 303 and written["n_outcomes"] == 139
    for name in ("model.json", "card.json", "card.md", "roc.png", "calibration.png", "manifest.json"):
        assert (out / name).is_file(), name
    assert "versus the rest" in json.loads((out / "card.json").read_text())["target_rule"]


@pytest.mark.parametrize("site", ["hungarian", "switzerland", "va"])
def test_cleveland_model_validates_on_other_sites(
    heart: Path, cleveland_model: tuple[Path, dict], tmp_path: Path, site: str
) -> None:
    model_dir, _ = cleveland_model
    metrics = validate_table(model_dir, heart / f"processed.{site}.data.csv", "target", tmp_path / site)
    assert REQUIRED <= set(json.loads((tmp_path / site / "metrics.json").read_text()))
    assert 0.55 < metrics["auroc"] <= 1.0
    assert (tmp_path / site / "validation_card.md").is_file()


def test_saved_model_loads_without_pickle_and_reproduces_predictions(
    heart: Path, cleveland_model: tuple[Path, dict]
) -> None:
    model_dir, _ = cleveland_model
    model = load_registered(model_dir)
    data = read_table(heart / "processed.cleveland.data.csv", "target")
    again = load_registered(model_dir).predict_proba(data.X)
    np.testing.assert_allclose(model.predict_proba(data.X), again)
    assert not any(p.suffix in {".pkl", ".pickle", ".joblib"} for p in model_dir.iterdir())


def test_tampered_model_is_refused(cleveland_model: tuple[Path, dict], tmp_path: Path) -> None:
    import shutil

    model_dir, _ = cleveland_model
    copy = tmp_path / "copy" / "cleveland"
    shutil.copytree(model_dir, copy)
    shutil.copy(model_dir.parent / "registry.json", copy.parent / "registry.json")
    doc = json.loads((copy / "model.json").read_text())
    doc["intercept"] = float(doc["intercept"]) + 1.0
    (copy / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="integrity"):
        load_registered(copy)


@pytest.mark.parametrize(
    ("relative", "target"),
    [
        ("pmlb/pima.tsv.gz", "target"),
        ("framingham.csv", "TenYearCHD"),
        ("healthcare-dataset-stroke-data.csv", "stroke"),
        ("chronic_kidney_disease.arff", "class"),
    ],
)
def test_other_tables_run_without_special_code(
    shared_data: Path, tmp_path: Path, relative: str, target: str
) -> None:
    # One model family keeps the suite quick; the reading and the design are the ones fit-table always uses.
    metrics = fit_table(
        shared_data / "clinical-tabular" / relative, target, tmp_path / "m", models=("logistic-l2",)
    )
    assert metrics["auroc"] > 0.7
    assert metrics["n"] > 300


def test_too_few_outcomes_is_a_clear_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = ["x,y"] + [f"{rng.normal():.3f},{int(i < 4)}" for i in range(200)]
    path = tmp_path / "rare.csv"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(ModelError, match="4 outcomes"):
        fit_table(path, "y", tmp_path / "out")
