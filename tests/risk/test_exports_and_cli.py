"""Package exports, and the fit-table / validate / models commands on a generated table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

import healthmesh.cohorts
import healthmesh.risk
from healthmesh.cli import app


def test_all_lists_the_public_names() -> None:
    for module in (healthmesh.risk, healthmesh.cohorts):
        names = set(vars(module)) | set(getattr(module, "_EXPORTS", ()))  # and the names loaded on first use
        public = {
            n for n in names if not n.startswith("_") and not isinstance(getattr(module, n), type(json))
        }
        public -= {"annotations"}
        assert set(module.__all__) == public, module.__name__
        # Sorted as isort/ruff sort it: CONSTANTS, then Classes, then functions.
        order = sorted(module.__all__, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n))
        assert module.__all__ == order


def _table(path: Path, seed: int, n: int = 400) -> None:
    rng = np.random.default_rng(seed)
    age = rng.normal(55, 10, n)
    smoker = rng.choice(["yes", "no", None], n, p=[0.3, 0.6, 0.1])
    risk = 1 / (1 + np.exp(-(-6 + 0.09 * age + 0.8 * (smoker == "yes"))))
    frame = pd.DataFrame(
        {"age": age.round(1), "smoker": smoker, "chd": np.where(rng.random(n) < risk, "yes", "no")}
    )
    frame.loc[::17, "age"] = None
    frame.to_parquet(path) if path.suffix == ".parquet" else frame.to_csv(path, index=False, na_rep="?")


def test_cli_fit_table_validate_and_registry(tmp_path: Path) -> None:
    _table(tmp_path / "train.csv", 1)
    _table(tmp_path / "other.parquet", 2)
    runner = CliRunner()
    model = tmp_path / "models" / "chd"
    result = runner.invoke(
        app,
        [
            "risk",
            "fit-table",
            "--data",
            str(tmp_path / "train.csv"),
            "--target",
            "chd",
            "--positive",
            "yes",
            "--out",
            str(model),
            "--models",
            "logistic-l1,logistic-l2",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["auroc"] > 0.6 and metrics["positive_label"] == "yes"
    assert "--positive" in json.loads((model / "card.json").read_text())["target_rule"]
    result = runner.invoke(
        app,
        [
            "risk",
            "validate",
            "--model",
            str(model),
            "--data",
            str(tmp_path / "other.parquet"),
            "--target",
            "chd",
            "--out",
            str(tmp_path / "val"),
        ],
    )
    assert result.exit_code == 0, result.output
    validated = json.loads((tmp_path / "val" / "metrics.json").read_text())
    assert validated["n"] == 400 and validated["positive_label"] == "yes"
    result = runner.invoke(app, ["risk", "models", "--registry", str(model.parent / "registry.json")])
    entry = json.loads((model.parent / "registry.json").read_text())["models"][0]
    assert entry["name"] == "table:train.csv:chd" and entry["version"] == 1
    assert result.exit_code == 0 and entry["sha256"][:12] in result.output
