"""Hub series are released cell by cell before any model sees them; public series are not touched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from healthmesh.errors import ForecastError
from healthmesh.forecast import Forecaster, read_hub_ili, rt_by_region
from healthmesh.forecast.protect import release_series, withheld_value
from healthmesh.forecast.rt_report import rt_report

from .conftest import hub_release


def test_released_series_withholds_small_weeks_and_perturbs_the_rest(ili_hub: Path) -> None:
    release = hub_release()
    exact = read_hub_ili(ili_hub)
    protected = release_series(exact, release)
    released = protected.released
    true = exact["y"].to_numpy()
    shown = released["y"].to_numpy()
    withheld = released["withheld"].to_numpy()
    small = true < release.min_count
    assert small.any() and withheld[small].all()
    assert (shown[withheld] == withheld_value(release)).all()
    big = ~withheld
    assert (np.abs(shown[big] - true[big]) <= release.max_noise).all() and (shown[big] >= release.min_count).all()
    assert (shown[big] != true[big]).mean() > 0.5  # perturbed, not copied
    # The same hub releases the same series every time: nothing to average away.
    again = release_series(exact, release).released
    assert (again["y"].to_numpy() == shown).all()


def test_rt_withholds_windows_of_few_cases(ili_hub: Path) -> None:
    release = hub_release()
    protected = release_series(read_hub_ili(ili_hub), release)
    rt = protected.rt(3.6, 1.6)
    exact = protected.exact.set_index(["unique_id", "ds"])["y"]
    for uid, ds in zip(rt["unique_id"], rt["ds"], strict=True):
        window = exact.loc[uid].loc[: pd.Timestamp(ds)].tail(2)
        assert window.sum() >= release.min_count
    unprotected = rt_by_region(protected.exact, 3.6, 1.6)
    assert len(rt) < len(unprotected)


def test_public_series_are_forecast_as_before(weekly_series: pd.DataFrame) -> None:
    # rt_by_region without exact counts, and the forecasters, see public data unchanged.
    rt = rt_by_region(weekly_series, 3.6, 1.6)
    assert rt_by_region(weekly_series, 3.6, 1.6, exact=None, min_cases=5).equals(rt)
    baseline = Forecaster(["baseline"]).fit(weekly_series).predict(1, (0.5,))
    last = weekly_series.sort_values("ds").groupby("unique_id")["y"].last()
    assert (baseline.set_index("unique_id")[0.5] == last).all()


def test_rt_report_of_a_hub_needs_its_release_path(ili_hub: Path, tmp_path: Path) -> None:
    with pytest.raises(ForecastError, match="release path"):
        rt_report(ili_hub, tmp_path / "rt")
    result = rt_report(ili_hub, tmp_path / "rt", release=hub_release())
    assert set(result["latest"]) == {"KR-29", "KR-41"}
