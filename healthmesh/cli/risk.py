"""``healthmesh risk``: train, validate, fit flat tables, score, and list tasks and registered models."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from healthmesh.cdm import connect
from healthmesh.errors import ModelError

app = typer.Typer(
    help="Major-disease risk models: train, validate, fit flat tables, score.", no_args_is_help=True
)
console = Console()


def _models(value: str | None) -> list[str] | None:
    return [m.strip() for m in value.split(",") if m.strip()] if value else None


def _hub_release(db: Path) -> Any:
    """The release path (``Release``) of the hub whose CDM is ``db``: the key and threshold of its service."""
    from healthmesh.cdm.database import is_postgres_url
    from healthmesh.config import Settings, hub_keys
    from healthmesh.privacy.release import Release

    if not is_postgres_url(db) and not db.is_file():
        raise ModelError(f"hub database {db} not found")
    settings = Settings()
    return Release(hub_keys(settings, db).release, settings.min_cell_count)


def _show(title: str, metrics: dict, out: Path) -> None:
    table = Table(title=title, show_header=False)
    table.add_row("model", str(metrics.get("model")))
    from healthmesh.risk.registry import SUMMARY_METRICS  # here: the risk package is slow to import

    for key in SUMMARY_METRICS:
        value = metrics.get(key)
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"report written to {out}/metrics.json")


@app.command("train")
def train(
    task: str = typer.Option(
        ..., "--task", help="Task name (t2dm-3y, mi-stroke-5y, ckd-3y) or task JSON file."
    ),
    db: Path = typer.Option(..., "--db", help="Hub CDM database file."),
    out: Path = typer.Option(..., "--out", help="Folder for the model, its card and metrics.json."),
    hub: str | None = typer.Option(None, "--hub", help="Hub name for the card; default: the CDM source."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split and the model search."),
    models: str | None = typer.Option(
        None, "--models", help="Comma-separated: logistic-l1,logistic-l2,lightgbm."
    ),
    registry: Path | None = typer.Option(
        None, "--registry", help="Registry file; default: OUT/../registry.json."
    ),
) -> None:
    """Train a prediction task on one hub's CDM; its card and metrics are released documents."""
    from healthmesh.risk import train_task

    release = _hub_release(db)
    with connect(db, read_only=True) as hub_db:
        metrics = train_task(
            hub_db, task, out, release=release, hub=hub, seed=seed, models=_models(models), registry=registry
        )
    _show(f"{task} trained at {metrics.get('hub')}", metrics, out)


@app.command("validate")
def validate(
    model: Path = typer.Option(..., "--model", help="Model folder written by train or fit-table."),
    out: Path = typer.Option(..., "--out", help="Folder for the validation report."),
    db: Path | None = typer.Option(None, "--db", help="Another hub's CDM (for models trained with train)."),
    data: Path | None = typer.Option(
        None, "--data", help="Another table (for models fitted with fit-table)."
    ),
    target: str | None = typer.Option(None, "--target", help="Target column of --data."),
    positive: str | None = typer.Option(None, "--positive", help="Positive class of the target."),
    hub: str | None = typer.Option(None, "--hub", help="Hub name for the report."),
    registry: Path | None = typer.Option(None, "--registry", help="Registry that vouches for the model."),
) -> None:
    """Apply a frozen model to another hub's CDM or another table and report the same metrics."""
    from healthmesh.risk import validate_cdm, validate_table

    if (db is None) == (data is None):
        raise ModelError("give exactly one of --db (a hub CDM) or --data (a table) to validate on")
    if data is not None:
        if not target:
            raise ModelError("--data needs --target COLUMN naming the outcome column")
        metrics = validate_table(model, data, target, out, positive=positive, registry=registry)
    else:
        assert db is not None
        release = _hub_release(db)
        with connect(db, read_only=True) as hub_db:
            metrics = validate_cdm(model, hub_db, out, release=release, hub=hub, registry=registry)
    _show(f"validation of {model}", metrics, out)


@app.command("fit-table")
def fit_table_command(
    data: Path = typer.Option(..., "--data", help="CSV/TSV (plain or .gz), Parquet or ARFF file."),
    target: str = typer.Option(..., "--target", help="Outcome column."),
    out: Path = typer.Option(..., "--out", help="Folder for the model, its card and metrics.json."),
    positive: str | None = typer.Option(
        None, "--positive", help="Positive class; default: minority of two values."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the cross-validation."),
    models: str | None = typer.Option(
        None, "--models", help="Comma-separated: logistic-l1,logistic-l2,lightgbm."
    ),
    registry: Path | None = typer.Option(
        None, "--registry", help="Registry file; default: OUT/../registry.json."
    ),
) -> None:
    """Fit and evaluate (nested cross-validation) a risk model on a flat table."""
    from healthmesh.risk import DEFAULT_MODELS, fit_table

    chosen = _models(models) or list(DEFAULT_MODELS)
    metrics = fit_table(data, target, out, positive=positive, seed=seed, models=chosen, registry=registry)
    _show(f"{target} in {data.name}", metrics, out)


@app.command("score")
def score(
    model: Path = typer.Option(..., "--model", help="Model folder written by train."),
    bundle: Path | None = typer.Option(None, "--bundle", help="One patient's FHIR Bundle (JSON)."),
    db: Path | None = typer.Option(None, "--db", help="A hub CDM: score its persons."),
    person: int | None = typer.Option(None, "--person", help="With --db: one person_id (with explanations)."),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Index date YYYY-MM-DD; default: last observed day."
    ),
    out: Path | None = typer.Option(None, "--out", help="With --db: CSV file for person_id,index_date,risk."),
) -> None:
    """Score one patient's Bundle, one person, or every person of a hub."""
    from healthmesh.risk import score_batch, score_bundle, score_person

    when = date.fromisoformat(as_of) if as_of else None
    if (bundle is None) == (db is None):
        raise ModelError("give exactly one of --bundle FILE or --db PATH")
    if bundle is not None:
        console.print_json(json.dumps(score_bundle(model, bundle, as_of=when)))
        return
    assert db is not None
    with connect(db, read_only=True) as hub_db:
        if person is not None:
            console.print_json(json.dumps(score_person(hub_db, model, person, when)))
            return
        scores = score_batch(model, hub_db, as_of=when)
    if out is not None:
        scores.to_csv(out, index=False)
        console.print(f"{len(scores):,} persons scored into {out}")
    else:
        console.print(scores.describe().to_string())


@app.command("tasks")
def tasks() -> None:
    """List the built-in prediction tasks."""
    from healthmesh.risk import builtin_tasks, load_task

    table = Table("task", "target cohort", "outcome cohort", "time at risk (days)")
    for name in builtin_tasks():
        task = load_task(name)
        tar = f"{task.time_at_risk.start_days}-{task.time_at_risk.end_days}"
        table.add_row(name, task.target().name, task.outcome().name, tar)
    console.print(table)


@app.command("models")
def models_command(
    registry: Path = typer.Option(..., "--registry", help="Registry file (registry.json)."),
) -> None:
    """List the model versions in a registry."""
    from healthmesh.risk import list_entries

    table = Table("name", "version", "hub", "created", "AUROC", "sha256", "path")
    for entry in list_entries(registry):
        auroc = entry.get("metrics", {}).get("auroc")
        table.add_row(
            str(entry["name"]),
            str(entry["version"]),
            str(entry.get("hub") or ""),
            str(entry["created"]),
            f"{auroc:.3f}" if isinstance(auroc, float) else "",
            str(entry["sha256"])[:12],
            str(entry["path"]),
        )
    console.print(table)
