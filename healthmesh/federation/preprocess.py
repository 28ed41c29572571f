"""Preprocessing agreed from aggregates, so that no row moves to fit it.

It mirrors ``healthmesh.risk.tables.make_preprocessor`` (numeric: impute the median, then
standardise; categorical: impute the most frequent value, then one-hot), fitted on the pooled
training rows of all hubs, but from what each hub sends:

- per numeric column: present and missing counts, sum, sum of squares, and either a frequency
  table (a coded column with at most ``DISCRETE_MAX_VALUES`` values; cells under the minimum size left
  out) or 19 quantiles (5 % ... 95 %; sent only when the hub has at least ``QUANTILE_MIN_ROWS``
  values). The pooled median is read off the mixture of the hubs' distributions; mean and variance
  after imputation follow exactly from the sums.
- per categorical column: the count of each category, cells under the minimum size left out (so a
  rare category is unknown to the model, which one-hot encodes it as all zeros).

Columns are the union over hubs (a hub that lacks a column has it missing in every row). A column
that is numeric at one hub and text at another is refused with a clear message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from healthmesh.errors import FederationError
from healthmesh.privacy.release import Release

__all__ = [
    "QUANTILE_LEVELS",
    "QUANTILE_MIN_ROWS",
    "AgreedPreprocessor",
    "agree_preprocessor",
    "summarise_columns",
]

QUANTILE_LEVELS = tuple(round(0.05 * k, 2) for k in range(1, 20))
QUANTILE_MIN_ROWS = 20
DISCRETE_MAX_VALUES = 10


def summarise_columns(
    X: pd.DataFrame,
    min_cell: int = 5,
    release: Release | None = None,
    row_ids: np.ndarray | None = None,
) -> dict[str, Any]:
    """The aggregates one hub sends about its training rows (JSON-able, no row-level values).

    With ``release`` every count (rows, present, missing, each value's count, the number of
    suppressed values) goes through the hub's release path, keyed by the set of rows it counts
    (``row_ids``: the rows' record ids); a withheld count travels as ``None``, and so do the sums
    and quantiles of a column whose present count is withheld (they would describe a few persons).
    """
    ids = np.arange(len(X), dtype=np.int64) if row_ids is None else np.asarray(row_ids, dtype=np.int64)

    def released(mask: np.ndarray | None = None) -> int | None:
        n = int(len(ids) if mask is None else np.count_nonzero(mask))
        if release is None:
            return n
        return release.count(n, release.person_key(ids if mask is None else ids[mask]))

    numeric: dict[str, Any] = {}
    categorical: dict[str, Any] = {}
    for column in X.columns:
        series = X[column]
        is_missing = series.isna().to_numpy()
        present = series.dropna()
        if pd.api.types.is_numeric_dtype(series):
            values = present.to_numpy(dtype=np.float64)
            distinct = np.unique(values)
            present_count = released(~is_missing)
            shown = present_count is not None and present_count > 0
            # Sums scaled to the released present count: the coordinator weighs the column's mean and
            # mean square by that count, so exact sums beside perturbed counts would skew the variance.
            weight = (present_count or 0) / values.size if values.size else 0.0
            summary: dict[str, Any] = {
                "present": present_count,
                "missing": released(is_missing),
                "sum": float(values.sum()) * weight if shown else None,
                "sumsq": float(np.square(values).sum()) * weight if shown else None,
                "quantiles": [],
                "value_counts": {},
            }
            if not shown:
                pass
            elif distinct.size <= DISCRETE_MAX_VALUES:
                # A coded column (sex, chest-pain type): a frequency table, small cells left out.
                full = series.to_numpy(dtype=np.float64)
                for level in distinct:
                    mask = full == level
                    if np.count_nonzero(mask) < min_cell:
                        continue
                    count = released(mask)
                    if count is not None:
                        summary["value_counts"][repr(float(level))] = int(count)
            elif values.size >= QUANTILE_MIN_ROWS:
                summary["quantiles"] = np.quantile(values, QUANTILE_LEVELS).tolist()
            numeric[str(column)] = summary
        else:
            text = series.astype(str).to_numpy()
            counts = present.astype(str).value_counts()
            kept: dict[str, int] = {}
            hidden = ~is_missing
            for value, count in counts.items():
                if count < min_cell:
                    continue
                mask = (text == str(value)) & ~is_missing
                shown_count = released(mask)
                if shown_count is not None:
                    kept[str(value)] = int(shown_count)
                    hidden &= ~mask
            categorical[str(column)] = {
                "missing": released(is_missing),
                "counts": kept,
                # A count of suppressed values is itself a count: it passes the release path too.
                "suppressed": released(hidden),
            }
    return {"rows": released(), "numeric": numeric, "categorical": categorical}


@dataclass
class AgreedPreprocessor:
    """The preprocessing every hub applies; JSON-able so it travels in a ConfigRecord."""

    numeric: list[str] = field(default_factory=list)
    fill: list[float] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    categorical_fill: list[str] = field(default_factory=list)
    categories: list[list[str]] = field(default_factory=list)

    @property
    def feature_names(self) -> list[str]:
        names = list(self.numeric)
        for column, cats in zip(self.categorical, self.categories, strict=True):
            names += [f"{column}={c}" for c in cats]
        return names

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgreedPreprocessor:
        return cls(**{k: list(v) for k, v in data.items()})

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """The model matrix for ``X`` (columns absent from ``X`` count as missing)."""
        n = len(X)
        blocks: list[np.ndarray] = []
        if self.numeric:
            num = np.empty((n, len(self.numeric)), dtype=np.float64)
            for j, column in enumerate(self.numeric):
                values = (
                    pd.to_numeric(X[column], errors="coerce").to_numpy(dtype=np.float64)
                    if column in X.columns
                    else np.full(n, np.nan)
                )
                num[:, j] = np.where(np.isnan(values), self.fill[j], values)
            blocks.append((num - np.asarray(self.mean)) / np.asarray(self.scale))
        for column, fill, cats in zip(self.categorical, self.categorical_fill, self.categories, strict=True):
            if column in X.columns:
                text = X[column].astype(object).where(X[column].notna(), fill).astype(str)
            else:
                text = pd.Series([fill] * n)
            blocks.append(
                (text.to_numpy()[:, None] == np.asarray(cats, dtype=object)[None, :]).astype(np.float64)
            )
        return np.hstack(blocks) if blocks else np.zeros((n, 0))


def _site_cdf(part: Mapping[str, Any], grid: np.ndarray) -> np.ndarray | None:
    """A hub's cumulative distribution on ``grid``, from its frequency table or its quantile curve."""
    if part.get("value_counts"):
        values = np.array([float(v) for v in part["value_counts"]])
        counts = np.array(list(part["value_counts"].values()), dtype=np.float64)
        return np.array([counts[values <= x].sum() for x in grid]) / counts.sum()
    if part.get("quantiles"):
        q = np.asarray(part["quantiles"], dtype=np.float64)
        levels = np.asarray(QUANTILE_LEVELS)
        # Tied quantiles: keep the highest level of each value (a right-continuous step).
        q_unique, last = np.unique(q[::-1], return_index=True)
        return np.interp(grid, q_unique, levels[::-1][last], left=0.0, right=1.0)
    return None


def _pooled_median(parts: Sequence[Mapping[str, Any]]) -> float:
    """The median of the count-weighted mixture of the hubs' distributions."""
    points = [float(v) for p in parts for v in p.get("value_counts", {})]
    points += [float(v) for p in parts for v in p.get("quantiles", [])]
    if not points:
        # No hub released a distribution: fall back to the pooled mean.
        present = sum(p["present"] or 0 for p in parts)
        return float(sum(p["sum"] or 0.0 for p in parts) / present) if present else 0.0
    grid = np.unique(points)
    weighted = [(p["present"] or 0, site) for p in parts if (site := _site_cdf(p, grid)) is not None]
    total = sum(n for n, _ in weighted)
    cdf = np.asarray(sum(n * c for n, c in weighted) / total, dtype=np.float64)
    if all(p.get("value_counts") for p in parts if p["present"]):
        # Coded values: the median is one of them (the smallest whose cumulative share reaches half).
        return float(grid[np.searchsorted(cdf, 0.5 - 1e-12)])
    return float(np.interp(0.5, cdf, grid)) if cdf[-1] > cdf[0] else float(grid[0])


def agree_preprocessor(summaries: Sequence[Mapping[str, Any]]) -> AgreedPreprocessor:
    """Combine the hubs' ``summarise_columns`` aggregates into one preprocessing."""
    if not summaries:
        raise FederationError("no hub sent column summaries; is any SuperNode connected?")
    numeric_names = sorted(
        {c for s in summaries for c in s["numeric"]}, key=_first_seen(summaries, "numeric")
    )
    categorical_names = sorted(
        {c for s in summaries for c in s["categorical"]}, key=_first_seen(summaries, "categorical")
    )
    both = set(numeric_names) & set(categorical_names)
    if both:
        raise FederationError(
            f"columns {sorted(both)} are numbers at some hubs and text at others; "
            "clean them to one type at every hub before training"
        )
    spec = AgreedPreprocessor(numeric=numeric_names, categorical=categorical_names)
    rows = sum(int(s["rows"] or 0) for s in summaries)
    for column in numeric_names:
        parts = [_with_zeros(s["numeric"][column]) for s in summaries if column in s["numeric"]]
        fill = _pooled_median(parts)
        total = sum(p["sum"] for p in parts)
        total_sq = sum(p["sumsq"] for p in parts)
        filled = rows - sum(p["present"] for p in parts)  # missing here, or absent at a hub
        mean = (total + filled * fill) / rows
        variance = max((total_sq + filled * fill * fill) / rows - mean * mean, 0.0)
        scale = float(np.sqrt(variance))
        spec.fill.append(fill)
        spec.mean.append(float(mean))
        spec.scale.append(scale if scale > 1e-12 else 1.0)
    for column in categorical_names:
        counts: dict[str, int] = {}
        for s in summaries:
            for value, count in s["categorical"].get(column, {}).get("counts", {}).items():
                counts[value] = counts.get(value, 0) + int(count)
        categories = sorted(counts)
        # Most frequent; on a tie the smallest value (scikit-learn's SimpleImputer rule).
        fill_value = min(categories, key=lambda v: (-counts[v], v)) if categories else "missing"
        spec.categorical_fill.append(fill_value)
        spec.categories.append(categories)
    return spec


def _with_zeros(part: Mapping[str, Any]) -> dict[str, Any]:
    """A column summary with withheld (None) counts and sums read as 0."""
    return {**part, **{k: part.get(k) or 0 for k in ("present", "missing", "sum", "sumsq")}}


def _first_seen(summaries: Sequence[Mapping[str, Any]], kind: str) -> Any:
    order: dict[str, int] = {}
    for s in summaries:
        for column in s[kind]:
            order.setdefault(column, len(order))
    return lambda column: order[column]
