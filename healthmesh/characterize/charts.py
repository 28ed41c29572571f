"""PNG charts of the main analyses, drawn only from released (suppressed) results."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

__all__ = ["write_charts"]


def _bar(frame: pd.DataFrame, x: str, y: str, title: str, path: Path, horizontal: bool = False) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    values = pd.to_numeric(frame[y], errors="coerce").fillna(0)
    labels = frame[x].astype(str)
    if horizontal:
        ax.barh(labels[::-1], values[::-1])
    else:
        ax.bar(labels, values)
        ax.tick_params(axis="x", labelrotation=90 if len(labels) > 12 else 0, labelsize=7)
    ax.set_title(title + " (suppressed cells shown as 0)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _lines(frame: pd.DataFrame, series: str, x: str, y: str, title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name, part in frame.groupby(series):
        ax.plot(pd.to_datetime(part[x]), pd.to_numeric(part[y], errors="coerce"), label=str(name), marker=".")
    ax.set_title(title + " (gaps: suppressed)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_charts(frames: dict[int, pd.DataFrame], out: Path) -> list[str]:
    """Write the charts whose analyses ran; returns the file names."""
    written: list[str] = []

    def done(name: str) -> None:
        written.append(name)

    if 2 in frames and not frames[2].empty:
        _bar(frames[2], "gender", "count_value", "Persons by sex", out / "persons_by_sex.png")
        done("persons_by_sex.png")
    if 3 in frames and not frames[3].empty:
        _bar(
            frames[3],
            "year_of_birth",
            "count_value",
            "Persons by year of birth",
            out / "persons_by_year_of_birth.png",
        )
        done("persons_by_year_of_birth.png")
    if 101 in frames and not frames[101].empty:
        _bar(
            frames[101],
            "age_decile",
            "count_value",
            "Persons by age decile at first observation",
            out / "age_at_first_observation.png",
        )
        done("age_at_first_observation.png")
    if 220 in frames and not frames[220].empty:
        monthly = frames[220].assign(month=pd.to_datetime(frames[220]["month"] + "-01"))
        _lines(
            monthly,
            "visit_concept_id",
            "month",
            "count_value",
            "Visits by type and month",
            out / "visits_by_month.png",
        )
        done("visits_by_month.png")
    if 400 in frames and not frames[400].empty:
        top = frames[400].dropna(subset=["persons"]).head(15)
        if not top.empty:
            _bar(top, "concept_name", "persons", "Top conditions (persons)", out / "top_conditions.png", True)
            done("top_conditions.png")
    if 9001 in frames and not frames[9001].empty:
        _lines(
            frames[9001],
            "region",
            "week_start",
            "count_value",
            "ILI visits by region and ISO week",
            out / "ili_by_region_week.png",
        )
        done("ili_by_region_week.png")
    return written
