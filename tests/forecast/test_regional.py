from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from healthmesh.forecast.cdm_series import read_hub_ili
from healthmesh.forecast.regional import forecast_hub_regions

from .conftest import build_ili_hub, hub_release


def test_hub_ili_series_counts_visits_per_region_and_iso_week(ili_hub: Path) -> None:
    series = read_hub_ili(ili_hub)
    assert set(series["unique_id"]) == {"KR-29", "KR-41"}
    assert (series["ds"].dt.weekday == 0).all()  # ISO weeks, dated by their Monday
    sizes = series.groupby("unique_id").size()
    assert sizes.nunique() == 1 and sizes.iloc[0] >= 100  # quiet weeks are zeros, not gaps
    from healthmesh.cdm import connect

    with connect(ili_hub, read_only=True) as db:
        total = db.scalar("SELECT count(*) FROM condition_occurrence WHERE condition_concept_id = 2000000001")
    assert series["y"].sum() == total


def test_forecast_hub_regions_writes_charts_and_a_summary(ili_hub: Path, tmp_path: Path) -> None:
    busan = build_ili_hub(tmp_path / "busan.duckdb", {"KR-26": 50.0})
    out = tmp_path / "charts"
    releases = {"gwangju": hub_release(b"gwangju master secret, 32 bytes or more"), "busan": hub_release()}
    summary = forecast_hub_regions({"gwangju": ili_hub, "busan": busan}, out, horizon=3, releases=releases)
    assert set(summary["regions"]) == {"KR-26", "KR-29", "KR-41"}
    assert summary["hubs"]["busan"] == ["KR-26"]
    for entry in summary["regions"].values():
        assert Path(entry["fan_chart"]).read_bytes()[:4] == b"\x89PNG"
        assert Path(entry["rt_chart"]).read_bytes()[:4] == b"\x89PNG"
        nxt = entry["next_week"]
        assert 0 <= nxt["lower95"] <= nxt["median"] <= nxt["upper95"]
        assert 0 <= entry["exceedance"]["probability"] <= 1
        assert entry["rt"]["lower95"] <= entry["rt"]["mean"] <= entry["rt"]["upper95"]
    forecast = pd.read_csv(summary["files"]["forecast"])
    assert forecast["step"].max() == 3
    assert json.loads((out / "summary.json").read_text())["regions"].keys() == summary["regions"].keys()


def test_hub_ili_reads_a_hub_this_process_holds_open(ili_hub: Path) -> None:
    from healthmesh.cdm import connect

    with connect(ili_hub):  # read-write, as a demo that has just built the hub would hold it
        assert read_hub_ili(ili_hub)["y"].sum() > 0
