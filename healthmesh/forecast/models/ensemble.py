"""Quantile ensembles: the per-level median of member forecasts, or a mean weighted by past WIS.

Both combine quantile by quantile (Vincentisation), as the FluSight-ensemble does; the result is
re-sorted and clipped at zero, so it never crosses.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from healthmesh.errors import ForecastError
from healthmesh.forecast.quantiles import tidy_quantiles

__all__ = ["combine_quantiles", "inverse_wis_weights"]


def combine_quantiles(
    members: dict[str, pd.DataFrame], levels: tuple[float, ...], weights: dict[str, float] | None = None
) -> pd.DataFrame:
    """Combine wide member forecasts (``unique_id, step, ds`` + level columns) into one.

    Without ``weights``: the median across members at each level. With weights: their weighted mean.
    Only forecasts present in every member are combined.
    """
    if not members:
        raise ForecastError("an ensemble needs at least one member forecast")
    keys = ["unique_id", "step", "ds"]
    names = sorted(members)
    common = members[names[0]][keys]
    for name in names[1:]:
        common = common.merge(members[name][keys], on=keys)
    common = common.sort_values(keys).reset_index(drop=True)
    stack = np.stack(
        [common.merge(members[n], on=keys, how="left")[list(levels)].to_numpy(dtype=float) for n in names]
    )
    if weights is None:
        combined = np.median(stack, axis=0)
    else:
        w = np.array([max(weights.get(n, 0.0), 0.0) for n in names])
        if w.sum() <= 0:
            raise ForecastError(f"ensemble weights {weights} are all zero; give at least one positive weight")
        combined = np.tensordot(w / w.sum(), stack, axes=1)
    out = common.copy()
    out[list(levels)] = tidy_quantiles(combined)
    return out


def inverse_wis_weights(mean_wis: dict[str, float], power: float = 2.0) -> dict[str, float]:
    """Weights proportional to (1 / mean WIS) ** power, normalised; equal when no score exists yet."""
    usable = {m: s for m, s in mean_wis.items() if np.isfinite(s) and s > 0}
    if not usable:
        return {m: 1.0 / len(mean_wis) for m in mean_wis} if mean_wis else {}
    raw = {m: (1.0 / s) ** power for m, s in usable.items()}
    total = sum(raw.values())
    return {m: raw.get(m, 0.0) / total for m in mean_wis}
