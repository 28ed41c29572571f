from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from healthmesh.errors import ForecastError
from healthmesh.forecast.backtest import data_as_of, parse_reference_dates, run_backtest
from healthmesh.forecast.hubformat import read_hub_forecasts
from healthmesh.forecast.quantiles import FLUSIGHT_QUANTILES
from healthmesh.forecast.series import read_flusight_target

DATES = [pd.Timestamp("2023-10-14"), pd.Timestamp("2023-11-04")]
MODELS = ["baseline", "arima", "gbqr", "gbqr-arima", "ensemble-weighted"]


def test_reference_dates_are_saturdays() -> None:
    assert len(parse_reference_dates("2023-10-14:2024-05-04")) == 30
    with pytest.raises(ForecastError, match="not a Saturday"):
        parse_reference_dates("2023-10-15:2023-11-04")


def test_data_as_of_prefers_the_vintage_of_r_minus_7(flusight_file: Path) -> None:
    target = read_flusight_target(flusight_file)
    cut = pd.Timestamp("2023-10-07")
    vintage = target[target["ds"] <= cut].assign(y=1.0)
    data, from_vintage = data_as_of(target, {cut: vintage}, pd.Timestamp("2023-10-14"))
    assert from_vintage and (data["y"] == 1.0).all() and data["ds"].max() == cut
    data, from_vintage = data_as_of(target, {cut: vintage}, pd.Timestamp("2023-10-21"))
    assert not from_vintage and data["ds"].max() == pd.Timestamp("2023-10-14")


def test_backtest_writes_hub_files_for_every_date_horizon_and_location(
    flusight_file: Path, tmp_path: Path
) -> None:
    target = read_flusight_target(flusight_file)
    result = run_backtest(target, DATES, ["baseline", "gbqr-arima"], out_dir=tmp_path / "out")
    files = sorted(p.relative_to(tmp_path / "out").as_posix() for p in result.files)
    assert "model-output/healthmesh-gbqr-arima/2023-10-14-healthmesh-gbqr-arima.csv" in files
    assert len(files) == 4
    frame = pd.read_csv(tmp_path / "out" / files[0], dtype={"location": str})
    assert list(frame.columns) == [
        "reference_date", "location", "horizon", "target", "target_end_date",
        "output_type", "output_type_id", "value",
    ]  # fmt: skip
    assert set(frame["horizon"]) == {0, 1, 2, 3}
    assert set(frame["location"]) == {"01", "02", "US"}
    assert sorted(frame["output_type_id"].unique()) == pytest.approx(list(FLUSIGHT_QUANTILES))
    assert (frame["target"] == "wk inc flu hosp").all()
    h0 = frame[frame["horizon"] == 0]
    assert (pd.to_datetime(h0["target_end_date"]) == pd.to_datetime(h0["reference_date"])).all()
    back = read_hub_forecasts(tmp_path / "out")
    assert set(back["model"]) == {"healthmesh-baseline", "healthmesh-gbqr-arima"}


def test_no_forecast_uses_data_after_r_minus_7(flusight_file: Path) -> None:
    target = read_flusight_target(flusight_file)
    first = run_backtest(target, DATES, MODELS).forecasts
    # Change every week after the first cut (2023-10-07) wildly; a leak-free date R = 2023-10-14 cannot notice.
    perturbed = target.copy()
    later = perturbed["ds"] > pd.Timestamp("2023-10-07")
    perturbed.loc[later, "y"] = perturbed.loc[later, "y"] * 7 + 1000
    second = run_backtest(perturbed, DATES, MODELS).forecasts
    key = ["model", "location", "horizon", "output_type_id"]
    a = first[first["reference_date"] == DATES[0]].sort_values(key)["value"].to_numpy()
    b = second[second["reference_date"] == DATES[0]].sort_values(key)["value"].to_numpy()
    assert set(MODELS) <= set(first["model"])
    assert a.shape == b.shape and len(a) == first["model"].nunique() * 3 * 4 * 23
    assert (a == b).all()
    # ... while the later date does see the change (the test can fail).
    c = first[first["reference_date"] == DATES[1]]["value"].to_numpy()
    d = second[second["reference_date"] == DATES[1]]["value"].to_numpy()
    assert not (c == d).all()
