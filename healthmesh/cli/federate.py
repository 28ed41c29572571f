"""``healthmesh federate``: federated learning and analytics on Flower, started on loopback."""

from __future__ import annotations

import json
import math
import signal
import sys
from pathlib import Path

import typer
from rich.console import Console

from healthmesh.errors import FederationError

app = typer.Typer(help="Federated learning and analytics across sites (Flower).", no_args_is_help=True)
console = Console()


def _stop_cleanly_on_sigterm() -> None:
    # SIGTERM becomes SystemExit, so the network's context manager stops every process it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def _parse_sites(values: list[str], what: str) -> dict[str, Path]:
    sites: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise FederationError(f"--site must be NAME={what}; got {value!r}")
        if name in sites:
            raise FederationError(f"site {name!r} is given twice; give each site once")
        sites[name.strip()] = Path(path.strip())
    return sites


def _checked_policy(path: Path | None) -> Path | None:
    """The policy file, validated here so that a bad one is a one-line error before any process starts."""
    from healthmesh.policy import load_policy

    if path is not None:
        load_policy(path)
    return path


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


@app.command("train-table")
def train_table_command(
    site: list[str] = typer.Option(..., "--site", help="NAME=FILE, once per site (CSV/TSV/Parquet/ARFF)."),
    target: str = typer.Option(..., "--target", help="Outcome column (binarised as `risk fit-table` does)."),
    strategy: str = typer.Option("fedavg", "--strategy", help="fedavg, fedprox or fedadam."),
    rounds: int = typer.Option(10, "--rounds", help="Federated rounds."),
    out: Path = typer.Option(..., "--out", help="Folder for metrics.json."),
    positive: str | None = typer.Option(None, "--positive", help="Value of the target that is positive."),
    local_steps: int = typer.Option(5, "--local-steps", help="Gradient steps at each site per round."),
    lr: float = typer.Option(1.0, "--lr", help="Local learning rate."),
    proximal_mu: float = typer.Option(0.5, "--proximal-mu", help="FedProx proximal weight."),
    server_lr: float = typer.Option(0.1, "--server-lr", help="FedAdam server learning rate."),
    seed: int = typer.Option(42, "--seed", help="Seed of every site's held-out split."),
    test_fraction: float = typer.Option(0.25, "--test-fraction", help="Held-out share of each site."),
    insecure: bool = typer.Option(
        False, "--insecure", help="Plain HTTP on loopback instead of self-signed TLS."
    ),
    policy: Path | None = typer.Option(
        None, "--policy", help="Hub policy file (TOML) every site applies; default: the shipped one."
    ),
) -> None:
    """Train a logistic regression across sites, one SuperNode per table, and compare with baselines."""
    from healthmesh.federation import train_table

    sites = _parse_sites(site, "FILE")
    _stop_cleanly_on_sigterm()
    with console.status(f"federating {len(sites)} sites with {strategy}, {rounds} rounds ..."):
        metrics = train_table(
            sites,
            target,
            out,
            strategy=strategy,
            rounds=rounds,
            positive=positive,
            seed=seed,
            test_fraction=test_fraction,
            lr=lr,
            local_steps=local_steps,
            proximal_mu=proximal_mu,
            server_lr=server_lr,
            tls=not insecure,
            policy=_checked_policy(policy),
        )
    console.print(
        f"federated AUROC {_fmt(metrics['federated_auroc'])} | centralised {_fmt(metrics['centralised_auroc'])} | "
        f"{metrics['bytes_exchanged']:,} bytes | {metrics['seconds']:.1f} s"
    )
    for name in sites:
        console.print(
            f"  {name}: federated {_fmt(metrics['federated_auroc_per_site'][name])}, "
            f"local {_fmt(metrics['local_auroc_per_site'][name])}"
        )
    console.print(f"wrote {out / 'metrics.json'}")


@app.command("count")
def count_command(
    hub: list[str] = typer.Option(..., "--hub", help="NAME=DB, once per hub CDM."),
    concept: list[int] = typer.Option(..., "--concept", help="Concept id of the set (repeat)."),
    workdir: Path = typer.Option(
        Path("work/federation"), "--workdir", help="Folder for the network's files."
    ),
    no_descendants: bool = typer.Option(False, "--no-descendants", help="Only the concepts themselves."),
    insecure: bool = typer.Option(
        False, "--insecure", help="Plain HTTP on loopback instead of self-signed TLS."
    ),
    policy: Path | None = typer.Option(
        None, "--policy", help="Hub policy file (TOML) every hub applies; default: the shipped one."
    ),
) -> None:
    """Count persons with a concept set at every hub (small cells suppressed there) and sum them."""
    from healthmesh.config import Settings
    from healthmesh.federation import federated_count, start_hub_network

    hubs = _parse_sites(hub, "DB")
    checked = _checked_policy(policy)
    _stop_cleanly_on_sigterm()
    with console.status("starting the network and counting ..."):
        with start_hub_network(
            hubs, workdir, tls=not insecure, policy=checked, settings=Settings()
        ) as network:
            result = federated_count(network, concept, include_descendants=not no_descendants)
    total = result["network"]["persons"]
    bound = (
        "" if total["complete"] else " (at least; suppressed at " + ", ".join(total["suppressed_at"]) + ")"
    )
    console.print(f"persons: {total['count']}{bound}")
    console.print(json.dumps(result["per_site"], indent=2))
