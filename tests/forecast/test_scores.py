from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from healthmesh.forecast.hubformat import read_hub_forecasts
from healthmesh.forecast.quantiles import FLUSIGHT_QUANTILES
from healthmesh.forecast.scores import (
    pairwise_relative_wis,
    pinball_wis,
    relative_wis,
    score_forecasts,
    summarise_scores,
    wis_components,
)
from healthmesh.forecast.series import read_flusight_target, read_flusight_vintages
from healthmesh.forecast.sources import truth_with_vintage

LEVELS = np.array([0.25, 0.5, 0.75])


@pytest.mark.parametrize(
    ("y", "wis", "dispersion", "over", "under"),
    [
        # y = 5 above the 50% interval [1, 4], median 2:
        # IS = (4 - 1) + 2 / 0.5 * (5 - 4) = 7; WIS = (0.5 * |5 - 2| + 0.25 * 7) / 1.5 = 3.25 / 1.5.
        (5.0, 3.25 / 1.5, 0.75 / 1.5, 0.0, 2.5 / 1.5),
        # y = 3 inside: WIS = (0.5 * 1 + 0.25 * 3) / 1.5; the median part counts as under-prediction.
        (3.0, 1.25 / 1.5, 0.75 / 1.5, 0.0, 0.5 / 1.5),
        # y = 0 below: IS = 3 + 4 * 1 = 7; WIS = (0.5 * 2 + 0.25 * 7) / 1.5.
        (0.0, 2.75 / 1.5, 0.75 / 1.5, 2.0 / 1.5, 0.0),
    ],
)
def test_wis_matches_hand_computed_cases_in_both_forms(y, wis, dispersion, over, under) -> None:
    values = np.array([[1.0, 2.0, 4.0]])
    parts = wis_components(np.array([y]), LEVELS, values)
    assert_allclose(parts["wis"], [wis])
    assert_allclose(parts["dispersion"], [dispersion])
    assert_allclose(parts["overprediction"], [over])
    assert_allclose(parts["underprediction"], [under])
    assert_allclose(pinball_wis(np.array([y]), LEVELS, values), [wis])


def test_interval_and_pinball_forms_agree_on_23_levels() -> None:
    rng = np.random.default_rng(0)
    values = np.sort(rng.gamma(2.0, 50.0, size=(200, 23)), axis=1)
    y = rng.gamma(2.0, 50.0, size=200)
    levels = np.array(FLUSIGHT_QUANTILES)
    assert_allclose(wis_components(y, levels, values)["wis"], pinball_wis(y, levels, values), rtol=1e-12)


def _hub(model: str, values: list[float], loc: str = "01", horizon: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": model,
            "reference_date": pd.Timestamp("2024-01-06"),
            "location": loc,
            "horizon": horizon,
            "target": "wk inc flu hosp",
            "target_end_date": pd.Timestamp("2024-01-06") + pd.Timedelta(weeks=horizon),
            "output_type": "quantile",
            "output_type_id": [str(q) for q in LEVELS],
            "value": values,
        }
    )


def test_score_forecasts_gives_coverage_and_relative_wis() -> None:
    truth = pd.DataFrame({"unique_id": ["01", "02"], "ds": [pd.Timestamp("2024-01-06")] * 2, "y": [3.0, 5.0]})
    forecasts = pd.concat(
        [
            _hub("good", [1, 2, 4], "01"),
            _hub("good", [1, 2, 4], "02"),
            _hub("flat", [2, 2, 2], "01"),
            _hub("flat", [2, 2, 2], "02"),
            _hub("good", [1, 2, 4], "03"),  # no truth: left out
        ]
    )
    scores = score_forecasts(forecasts, truth)
    assert len(scores) == 4
    good = scores[scores["model"] == "good"].set_index("location")
    assert good.loc["01", "cov50"] == 1.0 and good.loc["02", "cov50"] == 0.0
    assert_allclose(good["wis"].to_numpy(), [1.25 / 1.5, 3.25 / 1.5])
    # flat: WIS = 2 * mean pinball; y=3: (0.25+0.5+0.75)*1 * 2/3 = 1; y=5: 1.5*3*2/3 = 3.
    expected = (1.25 / 1.5 + 3.25 / 1.5) / (1.0 + 3.0)
    assert_allclose(relative_wis(scores, "good", "flat"), expected)
    table = summarise_scores(scores, "flat").set_index("model")
    assert_allclose(table.loc["good", "rel_wis"], expected)
    assert_allclose(table.loc["good", "rel_wis_pairwise"], expected)  # two models: the plain ratio


def test_pairwise_relative_wis_is_a_ratio_of_geometric_means() -> None:
    rows = []
    for model, wis in (("a", [1.0, 2.0]), ("b", [2.0, 2.0]), ("base", [4.0, 4.0])):
        for i, value in enumerate(wis):
            rows.append({"model": model, "reference_date": 0, "location": str(i), "horizon": 0, "wis": value})
    scores = pd.DataFrame(rows)
    # theta_a = (1 * 1.5/2 * 1.5/4)^(1/3), theta_base = (4/1.5 * 2 * 1)^(1/3).
    expected = ((1.5 / 2) * (1.5 / 4)) ** (1 / 3) / ((4 / 1.5) * 2.0) ** (1 / 3)
    assert_allclose(pairwise_relative_wis(scores, "base")["a"], expected)


def test_flusight_ensemble_2023_24_relative_wis_matches_the_official_figure(shared_data: Path) -> None:
    folder = shared_data / "flusight"
    forecasts = pd.concat(
        [
            read_hub_forecasts(folder / f"model-output_FluSight-{m}_2023-24.csv.gz")
            for m in ("ensemble", "baseline")
        ]
    )
    latest = read_flusight_target(folder / "target-hospital-admissions.csv")
    table = summarise_scores(score_forecasts(forecasts, latest), "FluSight-baseline").set_index("model")
    assert abs(table.loc["FluSight-ensemble", "rel_wis_pairwise"] - 0.71) <= 0.03
    assert 0.90 <= table.loc["FluSight-ensemble", "cov95"] <= 0.95
    # Truth as the official evaluation had it (the last vintage, then the latest file): closer still.
    vintages = read_flusight_vintages(
        folder / "target-hospital-admissions-vintages_2023-09-23_to_2024-04-27.tar.gz"
    )
    truth = truth_with_vintage(latest, vintages)
    table = summarise_scores(score_forecasts(forecasts, truth), "FluSight-baseline").set_index("model")
    assert abs(table.loc["FluSight-ensemble", "rel_wis_pairwise"] - 0.71) <= 0.01
