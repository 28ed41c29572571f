"""Charts for public-health readers: a fan chart per location and an Rt chart per region (PNG, Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window: servers and CI have no display

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["fan_chart", "rt_chart"]


def fan_chart(
    history: pd.DataFrame, forecast: pd.DataFrame, path: Path, title: str, history_weeks: int = 52
) -> Path:
    """History, the median forecast and its 50% and 95% bands for one location.

    ``history`` is one series (``ds, y``); ``forecast`` its wide quantile forecast (``ds`` and level
    columns including 0.025, 0.25, 0.5, 0.75, 0.975).
    """
    recent = history.sort_values("ds").tail(history_weeks)
    fc = forecast.sort_values("ds")
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    ax.plot(recent["ds"], recent["y"], color="black", marker="o", markersize=3, linewidth=1, label="observed")
    # Start the fan at the last observation so it visibly continues the curve.
    anchor_x = [recent["ds"].iloc[-1], *fc["ds"]]
    for low, high, alpha, label in ((0.025, 0.975, 0.2, "95% interval"), (0.25, 0.75, 0.4, "50% interval")):
        lows = [recent["y"].iloc[-1], *fc[low]]
        highs = [recent["y"].iloc[-1], *fc[high]]
        ax.fill_between(anchor_x, lows, highs, color="tab:blue", alpha=alpha, linewidth=0, label=label)
    ax.plot(
        anchor_x, [recent["y"].iloc[-1], *fc[0.5]], color="tab:blue", linewidth=2, label="median forecast"
    )
    ax.set_title(title)
    ax.set_ylabel("weekly count")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, ax, path)


def rt_chart(rt: pd.DataFrame, path: Path, title: str, history_days: int = 730) -> Path:
    """Rt over time with its 95% credible interval and the epidemic threshold R = 1.

    Shows the last ``history_days``; weeks or days without an estimate (between epidemics) are
    left as gaps instead of being bridged by a line.
    """
    data = rt.sort_values("ds")
    data = data[data["ds"] >= data["ds"].max() - pd.Timedelta(days=history_days)]
    step = data["ds"].diff().dropna().min() if len(data) > 1 else pd.Timedelta(days=1)
    grid = pd.date_range(data["ds"].min(), data["ds"].max(), freq=step)
    data = data.set_index("ds").reindex(grid).rename_axis("ds").reset_index()
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=110)
    ax.fill_between(
        data["ds"], data["lower"], data["upper"], color="tab:red", alpha=0.25, linewidth=0, label="95% CrI"
    )
    ax.plot(data["ds"], data["mean"], color="tab:red", linewidth=2, label="Rt (posterior mean)")
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_title(title)
    ax.set_ylabel("reproduction number")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, ax, path)


def _save(fig: Figure, ax: Axes, path: Path) -> Path:
    """The finish every chart shares: grid, dated x axis, tight layout, PNG written, figure freed."""
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
