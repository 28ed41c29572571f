"""Every built-in task on the platform's generated hubs: trained at gyeonggi, validated at busan.

The held-out part at the training hub is small (a few outcomes), so the signal is judged where the
numbers are larger: the frozen model applied to the whole population of the other hub.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from healthmesh.cdm import connect
from healthmesh.risk import train_task, validate_cdm

from .conftest import hub_release


@pytest.mark.parametrize("task", ["t2dm-3y", "mi-stroke-5y", "ckd-3y"])
def test_task_on_generated_hubs_has_real_signal(
    generated_hubs: dict[str, Path], tmp_path: Path, task: str
) -> None:
    with connect(generated_hubs["gyeonggi"], read_only=True) as db:
        trained = train_task(db, task, tmp_path / "model", release=hub_release(), hub="gyeonggi")
    with connect(generated_hubs["busan"], read_only=True) as db:
        validated = validate_cdm(
            tmp_path / "model",
            db,
            tmp_path / "busan",
            release=hub_release(b"busan master secret, 32 bytes or more"),
            hub="busan",
        )
    if trained["n_outcomes"] is None:  # a few outcomes held out: the released report withholds them
        assert trained["auroc"] is None and "withheld" in trained
    else:
        assert trained["n_outcomes"] >= 5 and 0.0 <= trained["auroc"] <= 1.0
    assert validated["n_outcomes"] >= 30
    assert validated["auroc"] > 0.6 and validated["auroc_ci_low"] > 0.5, validated["auroc"]
    card = json.loads((tmp_path / "busan" / "validation_card.json").read_text())
    assert card["hub"] == "busan" and card["evaluation"]["metrics"]["trained_at"] == "gyeonggi"
