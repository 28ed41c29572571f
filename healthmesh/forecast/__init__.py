"""Infectious-disease forecasting: series readers, quantile forecasters, WIS scores, backtests and Rt."""

from __future__ import annotations

__all__: list[str] = []
