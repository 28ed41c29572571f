"""``healthmesh study``: a researcher submits a study to the network and reads its results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from healthmesh.errors import ConfigError

app = typer.Typer(help="Studies of the live network: submit, status, results.", no_args_is_help=True)
console = Console()

UrlOption = Annotated[
    str, typer.Option("--network", help="the coordinator's URL", envvar="HEALTHMESH_NETWORK_URL")
]
TokenOption = Annotated[
    str,
    typer.Option(
        "--token", help="your researcher token", envvar="HEALTHMESH_NETWORK_TOKEN", show_default=False
    ),
]


CaOption = Annotated[
    Path | None,
    typer.Option(
        "--ca", help="the network's CA certificate (PEM), if not a public one", envvar="HEALTHMESH_NETWORK_CA"
    ),
]


def _client(url: str, token: str, ca: Path | None):  # type: ignore[no-untyped-def]
    from healthmesh.network.client import NetworkClient

    return NetworkClient(url, token, ca=ca)


def _show(study: dict[str, Any]) -> None:
    table = Table(
        "hub", "state", "note", title=f"study {study['study_id']} ({study['kind']}): {study['state']}"
    )
    for hub, part in study["hubs"].items():
        table.add_row(hub, part["state"], part["note"] or "")
    console.print(table)
    network = study.get("network", {})
    persons = network.get("persons")
    if persons is not None:
        bound = "" if persons["complete"] else " (a lower bound: withheld or missing at some hubs)"
        console.print(f"persons across the network: {persons['count']}{bound}", highlight=False)
    for step in network.get("attrition", []):
        console.print(f"  {step['step']}: {step['count']}", highlight=False)


@app.command()
def submit(
    network: UrlOption,
    token: TokenOption,
    kind: Annotated[str, typer.Option("--kind", help="count, characterization, cohort-attrition")],
    purpose: Annotated[str, typer.Option("--purpose", help="why: every hub's admin reads it")],
    ca: CaOption = None,
    concept: Annotated[list[int], typer.Option("--concept", help="count: a concept id; repeatable")] = [],  # noqa: B006
    cohort: Annotated[
        str | None,
        typer.Option("--cohort", help="cohort-attrition: a definition file (JSON) or a built-in's name"),
    ] = None,
    hub: Annotated[list[str], typer.Option("--hub", help="only these hubs; repeatable (default: all)")] = [],  # noqa: B006
    wait: Annotated[
        float, typer.Option("--wait", min=0, help="wait up to this many seconds for the answers")
    ] = 0.0,
    deadline: Annotated[
        float | None,
        typer.Option(
            "--deadline", min=1, help="seconds; then the study finishes with the hubs that answered"
        ),
    ] = None,
) -> None:
    """Submit a study; prints its id (and, with --wait, its state and results)."""
    request: dict[str, Any] = {"kind": kind, "purpose": purpose, "hubs": hub or None, "deadline_s": deadline}
    if concept:
        request["concept_ids"] = concept
    if cohort is not None:
        if Path(cohort).is_file():
            try:
                request["cohort"] = json.loads(Path(cohort).read_text())
            except ValueError as error:
                raise ConfigError(f"--cohort {cohort}: not JSON ({error})") from None
        else:
            request["builtin"] = cohort
    with _client(network, token, ca) as client:
        study = client.submit(request)
        typer.echo(study["study_id"])
        if wait > 0:
            _show(client.wait_finished(study["study_id"], wait))


@app.command()
def status(
    study_id: Annotated[str, typer.Argument(help="the study's id")],
    network: UrlOption,
    token: TokenOption,
    ca: CaOption = None,
    wait: Annotated[
        float, typer.Option("--wait", min=0, help="wait up to this many seconds for it to finish")
    ] = 0.0,
) -> None:
    """Each hub's state of a study, and the network figure so far."""
    with _client(network, token, ca) as client:
        _show(client.wait_finished(study_id, wait) if wait > 0 else client.study(study_id))


@app.command()
def results(
    study_id: Annotated[str, typer.Argument(help="the study's id")],
    network: UrlOption,
    token: TokenOption,
    ca: CaOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="write the JSON here instead of printing it")
    ] = None,
) -> None:
    """The study as JSON: each hub's state and released result, and the network figure."""
    with _client(network, token, ca) as client:
        text = json.dumps(client.study(study_id), indent=2)
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text + "\n")
        console.print(f"study {study_id}: results in {out}", highlight=False)


@app.command("list")
def list_studies(network: UrlOption, token: TokenOption, ca: CaOption = None) -> None:
    """Your studies, newest first."""
    with _client(network, token, ca) as client:
        table = Table("study", "kind", "state", "purpose")
        for study in client.studies():
            table.add_row(study["study_id"], study["kind"], study["state"], study["purpose"])
        console.print(table)
