"""FluSight 2023-24 backtest of every healthmesh forecaster beside the CDC FluSight-ensemble.

Runs the backtest with the data as it was (vintage of R - 7 days) for the 30 reference dates
2023-10-14 .. 2024-05-04, horizons 0-3, all locations; scores our models, the shared FluSight-ensemble
and FluSight-baseline forecasts on the same location-weeks (truth: the latest target data) and prints
relative WIS against the FluSight-baseline, coverage and run time. The 2022-23 season (no vintages:
the latest data cut at R - 7 days) is the selection period for the default model; the Korean DS4C
backtest (17 provinces) is reported beside the naive baseline.

    .venv/bin/python benchmarks/flusight.py [--data ../shared/data] [--skip-selection] [--skip-ds4c]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import pandas as pd

from healthmesh.forecast.backtest import parse_reference_dates, run_backtest
from healthmesh.forecast.hubformat import read_hub_forecasts
from healthmesh.forecast.models import DEFAULT_MODEL, MODEL_NAMES
from healthmesh.forecast.scores import score_forecasts, summarise_scores
from healthmesh.forecast.series import read_flusight_vintages
from healthmesh.forecast.sources import SourceData, load_source

SHARED = Path(
    os.environ.get("HEALTHMESH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
COLUMNS = ["model", "n", "wis", "rel_wis", "rel_wis_pairwise", "cov50", "cov95", "mae"]


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished worker processes (the backtest uses two)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _ours(forecasts: pd.DataFrame) -> pd.DataFrame:
    out = forecasts.copy()
    out["model"] = "healthmesh-" + out["model"]
    out["reference_date"] = pd.to_datetime(out["reference_date"])
    out["target_end_date"] = pd.to_datetime(out["target_end_date"])
    out["output_type_id"] = out["output_type_id"].astype(str)
    return out


def _common_set(scores: pd.DataFrame) -> pd.DataFrame:
    """Keep the location-weeks every model forecast, so all rows of the table compare like with like."""
    task = ["reference_date", "location", "horizon"]
    counts = scores.groupby(task)["model"].nunique()
    full = counts[counts == scores["model"].nunique()].index
    return scores.set_index(task).loc[full].reset_index()


def _table(scores: pd.DataFrame, baseline: str) -> str:
    table = summarise_scores(_common_set(scores), baseline)
    return table[COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.3f}")


def flusight_season(
    data: SourceData, dates: str, vintages, shared: pd.DataFrame | None, label: str
) -> pd.DataFrame:
    started, cpu = time.perf_counter(), _cpu_seconds()
    result = run_backtest(
        data.target,
        parse_reference_dates(dates),
        list(MODEL_NAMES),
        vintages=vintages,
        auxiliary=data.auxiliary,
        populations=data.populations,
    )
    wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    forecasts = _ours(result.forecasts)
    if shared is not None:
        forecasts = pd.concat([forecasts, shared], ignore_index=True)
    scores = score_forecasts(forecasts, data.target)
    baseline = "FluSight-baseline" if shared is not None else "healthmesh-baseline"
    print(f"\n== {label}: reference dates {dates}, {len(result.vintage_dates)} from vintages ==")
    print(_table(scores, baseline))
    print(
        f"backtest run time, all {len(MODEL_NAMES)} models: {wall:.1f} s wall, {cpu:.1f} s CPU (this process and its two workers)"
    )
    print("  per model (s): " + ", ".join(f"{m} {s:.1f}" for m, s in result.seconds.items()))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--skip-selection", action="store_true", help="skip the 2022-23 selection season")
    parser.add_argument("--skip-ds4c", action="store_true", help="skip the Korean DS4C backtest")
    parser.add_argument("--skip-test", action="store_true", help="skip the 2023-24 test season")
    args = parser.parse_args()
    folder = args.data / "flusight"
    data = load_source("flusight", folder / "target-hospital-admissions.csv")
    print(f"default model: {DEFAULT_MODEL}; inputs: {'; '.join(data.notes)}")

    if not args.skip_selection:
        flusight_season(
            data, "2022-10-15:2023-05-13", None, None, "2022-23 (selection; latest data cut at R-7)"
        )

    if not args.skip_test:
        test_season(folder, data)

    if not args.skip_ds4c:
        ds4c_backtest(args.data)


def test_season(folder: Path, data: SourceData) -> None:
    vintages = read_flusight_vintages(
        folder / "target-hospital-admissions-vintages_2023-09-23_to_2024-04-27.tar.gz"
    )
    shared = pd.concat(
        [
            read_hub_forecasts(folder / f"model-output_FluSight-{m}_2023-24.csv.gz")
            for m in ("ensemble", "baseline")
        ]
    )
    scores = flusight_season(
        data, "2023-10-14:2024-05-04", vintages, shared, "2023-24 (test; vintages of R-7)"
    )
    common = summarise_scores(_common_set(scores), "FluSight-baseline").set_index("model")
    ours = common.loc[f"healthmesh-{DEFAULT_MODEL}"]
    ensemble = common.loc["FluSight-ensemble"]
    print(
        f"\nheadline 2023-24: healthmesh-{DEFAULT_MODEL} relative WIS {ours['rel_wis']:.3f} vs FluSight-ensemble "
        f"{ensemble['rel_wis']:.3f} (ratio {ours['wis'] / ensemble['wis']:.3f}); coverage 50% {ours['cov50']:.3f}, "
        f"95% {ours['cov95']:.3f}"
    )


def ds4c_backtest(shared: Path) -> None:
    ds4c = load_source("ds4c", shared / "korea-covid19" / "ds4c-official" / "TimeProvince.csv")
    dates = "2020-02-22:2020-04-25"
    started = time.perf_counter()
    result = run_backtest(
        ds4c.target, parse_reference_dates(dates), list(MODEL_NAMES), target_name=ds4c.target_name
    )
    wall = time.perf_counter() - started
    scores = score_forecasts(_ours(result.forecasts), ds4c.target)
    provinces = ds4c.target["unique_id"].nunique()
    print(f"\n== DS4C Korea, {provinces} provinces, weekly COVID-19 cases, reference dates {dates} ==")
    print(_table(scores, "healthmesh-baseline"))
    print(f"run time {wall:.1f} s; {len(result.skipped)} model-dates skipped (too little history)")


if __name__ == "__main__":
    main()
