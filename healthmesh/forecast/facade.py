"""One facade over every forecaster: ``Forecaster(models=[...]).fit(df).predict(h, quantiles)``."""

from __future__ import annotations

import pandas as pd

from healthmesh.errors import ForecastError
from healthmesh.forecast.models import ENSEMBLES, combine_ensemble, ensemble_members, make_model
from healthmesh.forecast.models.base import QuantileForecaster
from healthmesh.forecast.quantiles import FLUSIGHT_QUANTILES
from healthmesh.forecast.series import validate_series

__all__ = ["Forecaster"]


class Forecaster:
    """Fit several models on one long frame and predict quantiles from all of them.

    An ensemble combines those of its members that fitted; a model that cannot fit these data (too
    short a history, say) is left out and named in ``skipped``. Weighted ensembles, which need past
    scores, weigh members equally here (the backtest gives them their past WIS).
    """

    def __init__(
        self,
        models: list[str],
        populations: dict[str, float] | None = None,
        auxiliary: pd.DataFrame | None = None,
    ) -> None:
        if not models:
            raise ForecastError("give at least one model, e.g. models=['arima']")
        self.models = models
        self.populations = populations
        self.auxiliary = auxiliary
        self.skipped: dict[str, str] = {}
        self._fitted: dict[str, QuantileForecaster] = {}

    def fit(self, df: pd.DataFrame) -> Forecaster:
        data = validate_series(df, "training series")
        self._fitted, self.skipped = {}, {}
        for name in ensemble_members(self.models):
            try:
                self._fitted[name] = make_model(name, self.populations, self.auxiliary).fit(data)
            except ForecastError as error:
                self.skipped[name] = str(error)
        return self

    def predict(self, h: int, quantiles: tuple[float, ...] = FLUSIGHT_QUANTILES) -> pd.DataFrame:
        """Wide frame ``model, unique_id, step, ds`` + one column per quantile level."""
        if not self._fitted:
            raise ForecastError(f"no model could be fitted: {self.skipped or 'call fit() first'}")
        wide: dict[str, pd.DataFrame] = {}
        for name, model in self._fitted.items():
            try:
                wide[name] = model.predict(h, quantiles)
            except ForecastError as error:
                self.skipped[name] = str(error)
        for name in self.models:
            combined = combine_ensemble(name, wide, quantiles) if name in ENSEMBLES else None
            if combined is not None:
                wide[name] = combined
        keep = [m for m in self.models if m in wide]
        if not keep:
            raise ForecastError(f"none of {self.models} produced a forecast: {self.skipped}")
        return pd.concat([wide[m].assign(model=m) for m in keep], ignore_index=True)
