from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from healthmesh.errors import ForecastError
from healthmesh.forecast import Forecaster
from healthmesh.forecast.models import (
    FluSightBaseline,
    GBQRForecaster,
    StatsForecastModel,
    combine_quantiles,
    inverse_wis_weights,
    resolve_models,
)
from healthmesh.forecast.quantiles import FLUSIGHT_QUANTILES, exceedance_probability, tidy_quantiles

LEVELS = FLUSIGHT_QUANTILES


def _assert_valid(wide: pd.DataFrame, data: pd.DataFrame, h: int) -> None:
    values = wide[list(LEVELS)].to_numpy()
    assert (np.diff(values, axis=1) >= 0).all(), "quantiles cross"
    assert (values >= 0).all(), "negative quantile"
    assert len(wide) == data["unique_id"].nunique() * h
    last = data.groupby("unique_id")["ds"].max()
    first_step = wide[wide["step"] == 1].set_index("unique_id")["ds"]
    assert ((first_step - last.loc[first_step.index]) == pd.Timedelta(days=7)).all()


@pytest.mark.parametrize(
    "model",
    [FluSightBaseline(), StatsForecastModel("ets"), StatsForecastModel("arima"), StatsForecastModel("theta")],
    ids=lambda m: m.name,
)
def test_single_models_give_ordered_non_negative_quantiles(model, weekly_series: pd.DataFrame) -> None:
    # A series that drops to zero pushes the lower quantiles below zero unless they are clipped.
    data = weekly_series.copy()
    data.loc[data.groupby("unique_id").tail(3).index, "y"] = 0.0
    _assert_valid(model.fit(data).predict(4, LEVELS), data, 4)


def test_gbqr_learns_across_series_and_stays_valid(weekly_series: pd.DataFrame) -> None:
    model = GBQRForecaster(populations={"A": 1e6, "B": 5e5}, n_estimators=30)
    _assert_valid(model.fit(weekly_series).predict(4, LEVELS), weekly_series, 4)
    with pytest.raises(ForecastError, match="trained for up to 4"):
        model.predict(6, LEVELS)


def test_baseline_median_is_the_last_observation(weekly_series: pd.DataFrame) -> None:
    wide = FluSightBaseline().fit(weekly_series).predict(3, LEVELS)
    last = weekly_series.groupby("unique_id")["y"].last()
    for uid, group in wide.groupby("unique_id"):
        assert np.allclose(group[0.5], last[uid])
        widths = (group[0.975] - group[0.025]).to_numpy()
        assert widths[-1] >= widths[0]  # uncertainty grows with the horizon


def test_ensembles_take_median_or_weighted_mean() -> None:
    base = pd.DataFrame({"unique_id": ["a"], "step": [1], "ds": [pd.Timestamp("2024-01-06")]})
    members = {
        name: pd.concat([base, pd.DataFrame([[v + q for q in LEVELS]], columns=list(LEVELS))], axis=1)
        for name, v in (("x", 1.0), ("y", 2.0), ("z", 9.0))
    }
    median = combine_quantiles(members, LEVELS)
    assert median[0.5].iloc[0] == pytest.approx(2.5)
    weighted = combine_quantiles(members, LEVELS, {"x": 1.0, "y": 1.0, "z": 0.0})
    assert weighted[0.5].iloc[0] == pytest.approx(2.0)
    weights = inverse_wis_weights({"x": 1.0, "y": 2.0, "z": float("nan")})
    assert weights["x"] > weights["y"] > weights["z"] == 0.0


def test_facade_fits_several_models_and_the_default_ensemble(weekly_series: pd.DataFrame) -> None:
    out = Forecaster(["baseline", "gbqr-arima"]).fit(weekly_series).predict(2)
    assert set(out["model"]) == {"baseline", "gbqr-arima"}
    assert (out[list(LEVELS)].to_numpy() >= 0).all()


def test_unknown_model_names_are_refused() -> None:
    with pytest.raises(ForecastError, match="unknown model"):
        resolve_models(["prophet"], "gbqr")
    assert resolve_models(None, "gbqr-arima") == ["gbqr-arima"]
    assert "baseline" in resolve_models(["all"], "gbqr")


def test_tidy_quantiles_uncrosses_and_clips() -> None:
    out = tidy_quantiles(np.array([[3.0, -1.0, 2.0]]))
    assert out.tolist() == [[0.0, 2.0, 3.0]]


def test_exceedance_probability_reads_the_quantile_function() -> None:
    levels = np.array(LEVELS)
    values = np.arange(1.0, 24.0)  # quantile k sits at value k
    assert exceedance_probability(levels, values, 12.0) == pytest.approx(0.5)
    assert exceedance_probability(levels, values, 12.5) == pytest.approx(0.475)
    assert exceedance_probability(levels, values, 100.0) < 0.01
    assert exceedance_probability(levels, values, 0.5) > 0.99
    zeros = np.r_[np.zeros(12), np.arange(1.0, 12.0)]
    assert exceedance_probability(levels, zeros, 0.0) == pytest.approx(0.5)
