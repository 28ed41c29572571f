"""``healthmesh forecast``: backtests, scores, Rt and regional forecasts (a thin shell over the domain)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from healthmesh.errors import ForecastError

if TYPE_CHECKING:  # pandas loads only when a forecast verb runs
    import pandas as pd

    from healthmesh.privacy.release import Release

app = typer.Typer(
    help="Forecast infectious disease: backtest, score, Rt, regional charts.", no_args_is_help=True
)
console = Console()


def _print_table(table: pd.DataFrame, title: str) -> None:
    # The full table (with the WIS parts) goes to the CSV; the screen gets the headline columns.
    shown = [
        c for c in ("model", "n", "wis", "rel_wis", "rel_wis_pairwise", "cov50", "cov95", "mae") if c in table
    ]
    console.print(f"[bold]{title}[/bold]")
    text = table[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}")
    console.print(text, highlight=False, soft_wrap=True, markup=False)


def _hub_release(db: Path) -> Release:
    """The release path of the hub whose CDM is ``db`` (the same key and threshold as its service)."""
    from healthmesh.config import Settings, hub_keys
    from healthmesh.privacy.release import Release

    if not db.is_file():
        raise ForecastError(f"hub database {db} not found")
    settings = Settings()
    return Release(hub_keys(settings, db).release, settings.min_cell_count)


@app.command("backtest")
def backtest(
    source: str = typer.Option("flusight", "--source", help="flusight or ds4c."),
    target_data: Path = typer.Option(
        ..., "--target-data", help="Target file (FluSight target data or DS4C TimeProvince.csv)."
    ),
    reference_dates: str = typer.Option(
        ..., "--reference-dates", help="START:END Saturdays, e.g. 2023-10-14:2024-05-04."
    ),
    out: Path = typer.Option(..., "--out", help="Output folder (hub format under model-output/)."),
    vintages: Path | None = typer.Option(
        None, "--vintages", help="Folder or .tar.gz of target-hospital-admissions_<date>.csv."
    ),
    model: list[str] | None = typer.Option(
        None, "--model", help="Model name (repeatable) or 'all'; default: the default model."
    ),
    ilinet: Path | None = typer.Option(
        None, "--ilinet", help="ILINet state file for ILI+ training series (default: beside the target)."
    ),
    clinical_labs: Path | None = typer.Option(
        None, "--clinical-labs", help="Clinical-labs state file for ILI+."
    ),
    locations: Path | None = typer.Option(
        None, "--locations", help="FluSight locations.csv with populations."
    ),
) -> None:
    """Forecast every reference date from the data as of R - 7 days and write hub-format files."""
    from healthmesh.forecast.backtest import parse_reference_dates, run_backtest
    from healthmesh.forecast.models import DEFAULT_MODEL, resolve_models
    from healthmesh.forecast.series import read_flusight_vintages
    from healthmesh.forecast.sources import load_source

    if vintages is not None and source != "flusight":
        raise ForecastError(f"--vintages is for --source flusight; source {source!r} has no vintages")
    models = resolve_models(model, DEFAULT_MODEL)
    dates = parse_reference_dates(reference_dates)
    data = load_source(source, target_data, ilinet, clinical_labs, locations)
    for note in data.notes:
        console.print(f"[dim]using {note}[/dim]")
    vintage_data = read_flusight_vintages(vintages) if vintages is not None else None
    result = run_backtest(
        data.target,
        dates,
        models,
        vintages=vintage_data,
        auxiliary=data.auxiliary,
        populations=data.populations,
        target_name=data.target_name,
        out_dir=out,
    )
    for line in result.skipped:
        console.print(f"[yellow]skipped[/yellow] {line}")
    console.print(
        f"{len(result.files)} forecast files for {len(dates)} reference dates "
        f"({len(result.vintage_dates)} from vintages) in {out / 'model-output'}"
    )
    for name, seconds in result.seconds.items():
        console.print(f"  {name}: {seconds:.1f} s")


@app.command("score")
def score(
    forecasts: list[Path] = typer.Option(..., "--forecasts", help="Hub-format folder or file (repeatable)."),
    truth: Path = typer.Option(
        ..., "--truth", help="Observed data: FluSight target file or DS4C TimeProvince.csv."
    ),
    baseline: str = typer.Option(..., "--baseline", help="Model the relative WIS is taken against."),
    out: Path | None = typer.Option(
        None, "--out", help="CSV for the score table (default: scores.csv in the first folder)."
    ),
    reference_dates: str | None = typer.Option(
        None, "--reference-dates", help="Only these reference dates (START:END)."
    ),
    vintages: Path | None = typer.Option(
        None,
        "--vintages",
        help="Score against the last vintage here (data as evaluated then), then the truth file.",
    ),
) -> None:
    """Score hub-format forecasts: WIS and its parts, MAE, 50%/95% coverage, relative WIS."""
    import pandas as pd

    from healthmesh.forecast.backtest import parse_reference_dates
    from healthmesh.forecast.hubformat import read_hub_forecasts
    from healthmesh.forecast.scores import score_forecasts, summarise_scores
    from healthmesh.forecast.series import read_flusight_vintages
    from healthmesh.forecast.sources import load_truth, truth_with_vintage

    frames = pd.concat([read_hub_forecasts(p) for p in forecasts], ignore_index=True)
    if reference_dates:
        frames = frames[frames["reference_date"].isin(parse_reference_dates(reference_dates))]
    if baseline not in set(frames["model"]):
        raise ForecastError(
            f"baseline {baseline!r} not among the models found: {sorted(set(frames['model']))}"
        )
    observed = load_truth(truth)
    if vintages is not None:
        observed = truth_with_vintage(observed, read_flusight_vintages(vintages))
    scores = score_forecasts(frames, observed)
    table = summarise_scores(scores, baseline)
    target = out or ((forecasts[0] if forecasts[0].is_dir() else forecasts[0].parent) / "scores.csv")
    target.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(target, index=False, float_format="%.4f")
    _print_table(table, f"scores against {baseline} ({len(scores):,} forecasts scored)")
    console.print(f"score table written to {target}")


@app.command("rt")
def rt(
    data: Path = typer.Option(
        ..., "--data", help="DS4C TimeProvince.csv, FluSight target file, or a hub CDM (.duckdb)."
    ),
    out: Path = typer.Option(..., "--out", help="Output folder for rt.csv and the charts."),
    si_mean: float | None = typer.Option(
        None, "--si-mean", help="Serial interval mean, days (default: COVID-19 4.7; ILI 3.6)."
    ),
    si_sd: float | None = typer.Option(
        None, "--si-sd", help="Serial interval sd, days (default: COVID-19 2.9; ILI 1.6)."
    ),
    window: int | None = typer.Option(
        None, "--window", help="Sliding window in steps (default 7 days / 2 weeks)."
    ),
) -> None:
    """Estimate Rt per region (Cori et al.) with 95% credible intervals, and chart it.

    A hub CDM's counts are released through the hub's release path first (its key and minimum cell
    count from HEALTHMESH_SECRET_KEY / HEALTHMESH_MIN_CELL_COUNT, as the hub service).
    """
    from healthmesh.forecast.rt_report import is_hub_database, rt_report

    release = _hub_release(data) if is_hub_database(data) else None
    result = rt_report(data, out, si_mean=si_mean, si_sd=si_sd, window=window, release=release)
    for region, latest in result["latest"].items():
        console.print(
            f"{region}: Rt {latest['mean']:.2f} (95% CrI {latest['lower95']:.2f}-{latest['upper95']:.2f}) on {latest['date']}"
        )
    console.print(f"Rt table and charts in {out}")


@app.command("regions")
def regions(
    db: list[str] = typer.Option(..., "--db", help="HUB=PATH of a hub CDM (repeatable)."),
    out: Path = typer.Option(..., "--out", help="Output folder for charts and tables."),
    horizon: int = typer.Option(4, "--horizon", help="Weeks ahead."),
    threshold: float | None = typer.Option(
        None, "--threshold", help="Early-warning level for next week's count."
    ),
) -> None:
    """Forecast ILI per region from the hubs' CDMs: fan charts, Rt charts, exceedance probabilities."""
    from healthmesh.forecast.regional import forecast_hub_regions

    paths = {}
    for item in db:
        if "=" not in item:
            raise ForecastError(f"--db {item!r} must be HUB=PATH, e.g. gwangju=hubs/gwangju.duckdb")
        name, path = item.split("=", 1)
        paths[name] = Path(path)
    releases = {name: _hub_release(path) for name, path in paths.items()}
    summary = forecast_hub_regions(paths, out, horizon, releases=releases, threshold=threshold)
    for region, entry in summary["regions"].items():
        nxt = entry["next_week"]
        line = f"{region}: next week {nxt['median']:.0f} (95% {nxt['lower95']:.0f}-{nxt['upper95']:.0f})"
        line += f", P(> {entry['exceedance']['threshold']:.0f}) = {entry['exceedance']['probability']:.2f}"
        if "rt" in entry:
            line += f", Rt {entry['rt']['mean']:.2f}"
        console.print(line)
        console.print(f"  [dim]{entry['fan_chart']}[/dim]")
    console.print(f"charts and tables in {out}")
