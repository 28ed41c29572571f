"""The demo's steps, each a call into a domain; results gathered for the report."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from healthmesh.cdm import connect
from healthmesh.errors import ConfigError, ModelError
from healthmesh.hubkeys import HubKeys
from healthmesh.ingest import IngestReport, build_synthetic_hub

__all__ = ["HUBS", "DemoConfig", "DemoResult", "run_demo"]

HUBS = ("gwangju", "gyeonggi", "busan")
TRAINING_HUB = "gyeonggi"
RISK_TASK = "t2dm-3y"
T2DM_CONCEPT = 201826

Say = Callable[[str], None]


@dataclass
class DemoConfig:
    workdir: Path
    patients: int = 1500
    seed: int = 1
    # The network's master secret (strong; the CLI keeps it in the work dir); each hub derives its keys.
    master_secret: str = ""
    federation: bool = True
    min_count: int = 5

    @property
    def keys(self) -> HubKeys:
        if not self.master_secret:
            raise ConfigError("the demo needs a master secret")
        return HubKeys(self.master_secret.encode())


@dataclass
class DemoResult:
    workdir: Path
    ingest: dict[str, IngestReport] = field(default_factory=dict)
    quality: dict[str, dict[str, Any]] = field(default_factory=dict)
    characterization: dict[str, str] = field(default_factory=dict)
    catalog: dict[str, dict[str, Any]] = field(default_factory=dict)
    risk: dict[str, Any] = field(default_factory=dict)
    forecast: dict[str, Any] = field(default_factory=dict)
    federation: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def db(self, hub: str) -> Path:
        return self.workdir / hub / "hub.duckdb"

    def hub_rows(self) -> tuple[list[str], list[list[Any]]]:
        """Per-hub integration figures: persons, records per CDM table, mapped share, rejects."""
        header = ["hub", "persons", "visits", "conditions", "measurements", "drugs", "deaths", "mapped share",
                  "input records", "rejected"]  # fmt: skip
        rows: list[list[Any]] = []
        for hub, report in self.ingest.items():
            clinical = report.mapped_share()
            loaded = sum(r["loaded"] for t, r in report.by_type.items() if t in clinical)
            mapped = sum(r["mapped"] for t, r in report.by_type.items() if t in clinical)
            t = report.tables
            rows.append([hub, t.get("person", 0), t.get("visit_occurrence", 0), t.get("condition_occurrence", 0),
                         t.get("measurement", 0), t.get("drug_exposure", 0), t.get("death", 0),
                         f"{mapped / loaded:.1%}" if loaded else "-", report.records, report.rejected])  # fmt: skip
        return header, rows


def _timed(result: DemoResult, name: str, say: Say) -> Callable[[Callable[[], None]], None]:
    def run(step: Callable[[], None]) -> None:
        started = time.perf_counter()
        step()
        result.timings[name] = round(time.perf_counter() - started, 1)
        say(f"[green]done[/green] {name} in {result.timings[name]:.1f} s")

    return run


def _integrate(config: DemoConfig, result: DemoResult, say: Say) -> None:
    for offset, hub in enumerate(HUBS):
        say(f"generating and ingesting {config.patients:,} people for {hub}")
        result.db(hub).parent.mkdir(parents=True, exist_ok=True)
        result.ingest[hub] = build_synthetic_hub(
            result.db(hub), hub, config.patients, config.seed + offset, config.keys.pseudonym
        )


def _know(config: DemoConfig, result: DemoResult, say: Say) -> None:
    from healthmesh.characterize import build_catalog, characterize
    from healthmesh.privacy.release import Release
    from healthmesh.quality import run_quality

    for hub in HUBS:
        out = result.workdir / hub / "reports"
        release = Release(config.keys.release, config.min_count)
        with connect(result.db(hub), read_only=True) as db:
            quality = run_quality(db, out, release=release)
            characterization = characterize(db, out, release=release, hub=hub)
            catalog = build_catalog(
                db, hub, out, release=release, quality=quality, characterization=characterization
            )
        result.quality[hub] = quality.summary()
        result.characterization[hub] = str(out)
        result.catalog[hub] = catalog
        summary = result.quality[hub]
        say(
            f"{hub}: {summary['checks_passed']:,} of {summary['checks_run']:,} quality checks passed; reports in {out}"
        )


def _risk(config: DemoConfig, result: DemoResult, say: Say) -> None:
    from healthmesh.risk import train_task, validate_cdm

    model_dir = result.workdir / "models" / f"{RISK_TASK}-{TRAINING_HUB}"
    try:
        with connect(result.db(TRAINING_HUB), read_only=True) as db:
            trained = train_task(
                db,
                RISK_TASK,
                model_dir,
                release=_releases(config)[TRAINING_HUB],
                hub=TRAINING_HUB,
                seed=config.seed,
            )
    except ModelError as error:  # too few outcomes in a small population: say so and go on
        say(f"[yellow]risk model skipped: {error}[/yellow]")
        return
    result.risk = {
        "task": RISK_TASK,
        "trained_at": TRAINING_HUB,
        "model_dir": str(model_dir),
        "train": trained,
    }
    result.risk["validation"] = {}
    for hub in HUBS:
        if hub == TRAINING_HUB:
            continue
        with connect(result.db(hub), read_only=True) as db:
            out = result.workdir / "validation" / f"{RISK_TASK}-{hub}"
            result.risk["validation"][hub] = validate_cdm(
                model_dir, db, out, release=_releases(config)[hub], hub=hub
            )
    say(
        f"{RISK_TASK}: AUROC {trained.get('auroc') or float('nan'):.3f} at {TRAINING_HUB}; "  # None: withheld
        + ", ".join(f"{h} {m.get('auroc') or float('nan'):.3f}" for h, m in result.risk["validation"].items())
    )


def _releases(config: DemoConfig) -> dict[str, Any]:
    """Each demo hub's release path (``Release``; the demo's hubs share one master secret)."""
    from healthmesh.privacy.release import Release

    return {hub: Release(config.keys.release, config.min_count) for hub in HUBS}


def _forecast(config: DemoConfig, result: DemoResult, say: Say) -> None:
    from healthmesh.forecast import forecast_hub_regions

    result.forecast = forecast_hub_regions(
        {hub: result.db(hub) for hub in HUBS}, result.workdir / "forecasts", releases=_releases(config)
    )
    say(f"forecasts and Rt charts in {result.workdir / 'forecasts'}")


def _federate(config: DemoConfig, result: DemoResult, say: Say) -> None:
    from healthmesh.federation import federated_study, start_hub_network

    with start_hub_network(
        {hub: result.db(hub) for hub in HUBS},
        result.workdir / "federation",
        min_cell=config.min_count,
        release_keys={hub: config.keys.release for hub in HUBS},
    ) as network:
        say("Flower SuperLink and three SuperNodes up (TLS on loopback); running the federated study")
        result.federation = federated_study(network, [T2DM_CONCEPT], risk_task=RISK_TASK, rounds=5)
    say(f"federated study done: {json.dumps(result.federation['count']['network'])[:160]}")


def run_demo(config: DemoConfig, say: Say) -> DemoResult:
    """Run every step of the demo into ``config.workdir``; returns what the report shows."""
    config.workdir.mkdir(parents=True, exist_ok=True)
    result = DemoResult(config.workdir)
    steps: list[tuple[str, Callable[[DemoConfig, DemoResult, Say], None]]] = [
        ("integration", _integrate),
        ("quality and characterization", _know),
        ("risk model", _risk),
        ("forecasts", _forecast),
    ]
    if config.federation:
        steps.append(("federation", _federate))
    for name, step in steps:
        _timed(result, name, say)(lambda step=step: step(config, result, say))  # type: ignore[misc]
    return result
