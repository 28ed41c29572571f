"""A hub's weekly ILI series as it may leave the hub: released week by week, before any model sees it.

A forecast or an Rt estimate computed from exact counts gives those counts back: the baseline's
median *is* last week's count, and an Rt interval fixes the gamma posterior's shape, which is the
prior shape plus the window's case sum. So every model output that leaves a hub (``GET /forecasts``,
``GET /forecasts/rt``, the CLI's hub-sourced output, the demo's figures) is computed from the
released series instead:

* each cell (region x week) goes through the hub's ``Release`` with ``label_key("ili", region,
  week)``: a count that is small, or perturbed below the threshold, is withheld; the rest is
  perturbed. An ILI series is a fixed publication (no caller chooses its cells), so a label key is
  the right cell key;
* a withheld week enters the models as the midpoint of the counts a withheld cell may hold
  (``Release.possible_counts(None)``: 3.5 with the defaults). That value has the smallest worst-case
  error, is never the true count with certainty, and is the same for every withheld week, so it
  tells an attacker nothing beyond "withheld". A 0 would bias quiet stretches down and would read
  as "no visit", which the release path does not say;
* an Rt window whose *exact* case sum is below ``min_count`` is withheld altogether (see
  ``rt.rt_by_region``), so a quiet fortnight is not even described by its noisy sum; so is a
  window that holds a withheld week: its stand-in is no noisy count, and a window sum of two
  withheld weeks (true 5 .. 8, stand-in 5) would be guessed exactly far more often than the
  perturbation allows (measured: a third of such windows against one in seven).

What an attacker gets by inverting an output is the released value: the true count plus the cell's
noise, exact only when that noise happens to be 0 (probability ``1 / (2 * max_noise + 1)`` per week),
and never a withheld week. The exact series stays inside this object and is used for one thing
only: deciding which Rt windows to withhold.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from healthmesh.forecast.rt import COVID19_SERIAL_INTERVAL, rt_by_region
from healthmesh.forecast.series import validate_series
from healthmesh.privacy.release import Release

__all__ = ["ProtectedSeries", "release_series", "withheld_value"]


def withheld_value(release: Release) -> float:
    """What a withheld week counts as in a model: the midpoint of the counts a withheld cell may hold."""
    possible = release.possible_counts(None)
    return (possible[0] + possible[-1]) / 2


@dataclass(frozen=True)
class ProtectedSeries:
    """``released``: ``unique_id, ds, y, withheld`` (what models see); ``exact`` never leaves the hub."""

    released: pd.DataFrame
    exact: pd.DataFrame
    min_count: int

    @property
    def series(self) -> pd.DataFrame:
        """The released long frame ``unique_id, ds, y`` for the forecasters."""
        return self.released[["unique_id", "ds", "y"]]

    def rt(
        self,
        si_mean: float = COVID19_SERIAL_INTERVAL[0],
        si_sd: float = COVID19_SERIAL_INTERVAL[1],
        window: int | None = None,
    ) -> pd.DataFrame:
        """Rt from the released series; a window is withheld when its exact case sum is below
        ``min_count`` or when it holds a withheld week."""
        withheld = self.released.set_index(["unique_id", "ds"])["withheld"]
        return rt_by_region(
            self.series, si_mean, si_sd, window, exact=self.exact, min_cases=self.min_count, withheld=withheld
        )


def release_series(series: pd.DataFrame, release: Release, label: str = "ili") -> ProtectedSeries:
    """Release every cell of a long frame of weekly counts (``unique_id, ds, y``) through ``release``."""
    exact = validate_series(series, f"{label} series")
    fill = withheld_value(release)
    values, withheld = [], []
    for region, week, count in zip(exact["unique_id"], exact["ds"], exact["y"], strict=True):
        shown = release.count(int(round(count)), release.label_key(label, region, f"{week:%Y-%m-%d}"))
        withheld.append(shown is None)
        values.append(fill if shown is None else float(shown))
    released = exact[["unique_id", "ds"]].copy()
    released["y"] = values
    released["withheld"] = withheld
    return ProtectedSeries(released.reset_index(drop=True), exact.reset_index(drop=True), release.min_count)
