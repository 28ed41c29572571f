"""Every built-in task trains on a generated hub with real signal, and validates at another hub."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from healthmesh.cdm import connect, create_hub
from healthmesh.cli import app
from healthmesh.errors import ModelError
from healthmesh.risk import builtin_tasks, load_task, score_batch, train_task, validate_cdm
from healthmesh.risk.registry import list_entries
from healthmesh.risk.toycdm import populate_toy_cdm

from .conftest import hub_release

KEYS = {
    "auroc",
    "auroc_ci_low",
    "auroc_ci_high",
    "auprc",
    "brier",
    "scaled_brier",
    "calibration_in_the_large",
    "calibration_intercept",
    "calibration_slope",
    "eo_ratio",
    "e_avg",
    "e90",
    "e_max",
    "ici",
    "n",
    "n_outcomes",
    "model",
    "subgroups",
}


@pytest.fixture(scope="module")
def trained(
    toy_hubs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, dict]]:
    folder = tmp_path_factory.mktemp("models")
    out: dict[str, tuple[Path, dict]] = {}
    with connect(toy_hubs["gyeonggi"], read_only=True) as db:
        for name in builtin_tasks():
            out[name] = (folder / name, train_task(db, name, folder / name, release=hub_release(), seed=3))
    return out


def test_builtin_tasks_are_the_three_of_the_issue() -> None:
    assert {"t2dm-3y", "mi-stroke-5y", "ckd-3y"} <= set(builtin_tasks())
    assert load_task("t2dm-3y").time_at_risk.end_days == 1095
    assert load_task("mi-stroke-5y").time_at_risk.end_days == 1825


@pytest.mark.parametrize("task", ["t2dm-3y", "mi-stroke-5y", "ckd-3y"])
def test_task_trains_with_real_signal(trained: dict[str, tuple[Path, dict]], task: str) -> None:
    folder, metrics = trained[task]
    assert metrics["auroc"] > 0.65, metrics["auroc"]
    written = json.loads((folder / "metrics.json").read_text())
    assert KEYS <= set(written)
    assert set(written["subgroups"]) == {"sex", "age_band", "hub"}
    assert set(written["subgroups"]["sex"]) == {"female", "male"}
    assert written["subgroups"]["hub"]["gyeonggi"]["n"] == written["n"]
    card = json.loads((folder / "card.json").read_text())
    assert card["task"]["name"] == task and card["hub"] == "gyeonggi"
    # Released: within the noise of the true 2,000 (the same cell always gets the same noise).
    assert abs(card["data"]["attrition"][0]["persons"] - 2000) <= hub_release().max_noise
    for name in ("card.md", "roc.png", "calibration.png", "model.json"):
        assert (folder / name).is_file()


@pytest.mark.parametrize("task", ["t2dm-3y", "mi-stroke-5y", "ckd-3y"])
def test_frozen_model_validates_at_another_hub(
    trained: dict[str, tuple[Path, dict]], toy_hubs: dict[str, Path], tmp_path: Path, task: str
) -> None:
    folder, _ = trained[task]
    with connect(toy_hubs["busan"], read_only=True) as db:
        metrics = validate_cdm(
            folder, db, tmp_path / "val", release=hub_release(b"busan master secret, 32 bytes or more")
        )
    assert metrics["hub"] == "busan" and metrics["trained_at"] == "gyeonggi"
    assert metrics["auroc"] > 0.6
    assert KEYS <= set(json.loads((tmp_path / "val" / "metrics.json").read_text()))


def test_registry_records_each_model(trained: dict[str, tuple[Path, dict]]) -> None:
    folder, _ = trained["t2dm-3y"]
    entries = list_entries(folder.parent / "registry.json")
    assert {e["name"] for e in entries} == set(builtin_tasks())
    entry = next(e for e in entries if e["name"] == "t2dm-3y")
    assert entry["hub"] == "gyeonggi" and len(entry["sha256"]) == 64 and len(entry["data_fingerprint"]) == 64


def test_training_is_reproducible_with_a_seed(toy_hubs: dict[str, Path], tmp_path: Path) -> None:
    with connect(toy_hubs["busan"], read_only=True) as db:
        first = train_task(db, "t2dm-3y", tmp_path / "a", release=hub_release(), seed=5, models=["lightgbm"])
        second = train_task(db, "t2dm-3y", tmp_path / "b", release=hub_release(), seed=5, models=["lightgbm"])
    assert first["model"] == second["model"]
    np.testing.assert_allclose(first["auroc"], second["auroc"])
    np.testing.assert_allclose(first["brier"], second["brier"])


def test_too_few_outcomes_is_a_clear_error(tmp_path: Path) -> None:
    db = create_hub(str(tmp_path / "small.duckdb"))
    populate_toy_cdm(db, 60, seed=1)
    with pytest.raises(ModelError, match="outcomes and .* non-outcomes; at least 10"):
        train_task(db, "mi-stroke-5y", tmp_path / "m", release=hub_release())
    db.close()


def test_batch_scores_every_person(trained: dict[str, tuple[Path, dict]], toy_hubs: dict[str, Path]) -> None:
    folder, _ = trained["t2dm-3y"]
    with connect(toy_hubs["busan"], read_only=True) as db:
        scores = score_batch(folder, db)
    assert len(scores) == 1500 and scores["risk"].between(0, 1).all()
    assert scores["risk"].std() > 0.01


def test_cli_train_and_validate(toy_hubs: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "models" / "t2dm"
    result = runner.invoke(
        app,
        [
            "risk",
            "train",
            "--task",
            "t2dm-3y",
            "--db",
            str(toy_hubs["busan"]),
            "--out",
            str(out),
            "--models",
            "logistic-l2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "auroc" in result.output and (out / "metrics.json").is_file()
    result = runner.invoke(
        app,
        [
            "risk",
            "validate",
            "--model",
            str(out),
            "--db",
            str(toy_hubs["gyeonggi"]),
            "--out",
            str(tmp_path / "v"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "v" / "metrics.json").read_text())["hub"] == "gyeonggi"
    result = runner.invoke(
        app,
        [
            "risk",
            "train",
            "--task",
            "no-such-task",
            "--db",
            str(toy_hubs["busan"]),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert isinstance(result.exception, ModelError) and "not found" in str(result.exception)
