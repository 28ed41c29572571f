"""The ``healthmesh`` command: a thin shell over the domains.

Each verb group lives in its own module here and only translates arguments into domain calls.
Errors of the ``HealthmeshError`` tree become one red line and the exit code of
``healthmesh.errors.EXIT_CODES``; never a traceback.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from healthmesh.errors import EXIT_CODES, HealthmeshError

__all__ = ["app", "main"]

app = typer.Typer(
    name="healthmesh",
    help="Regional health-data hubs: integrate, check, model, forecast and federate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

err_console = Console(stderr=True)


def _register() -> None:
    # Imported here so that each verb group stays a separate, small module.
    from healthmesh.cli import (
        audit,
        cdm,
        cohort,
        demo,
        federate,
        forecast,
        hub,
        ingest,
        network,
        privacy,
        quality,
        risk,
        study,
        synth,
    )

    app.command("demo")(demo.demo)
    app.add_typer(cdm.app, name="cdm")
    app.command("synth")(synth.synth)
    app.command("ingest")(ingest.ingest)
    quality.register(app)  # healthmesh quality | characterize | catalog
    app.add_typer(privacy.app, name="privacy")
    app.add_typer(cohort.app, name="cohort")
    app.add_typer(risk.app, name="risk")
    app.add_typer(forecast.app, name="forecast")
    app.add_typer(federate.app, name="federate")
    app.add_typer(hub.app, name="hub")
    app.add_typer(audit.app, name="audit")
    app.add_typer(network.app, name="network")
    app.add_typer(study.app, name="study")


_register()


def _exit_code_for(error: HealthmeshError) -> int:
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


def main() -> None:
    """Entry point of the ``healthmesh`` console script."""
    # Everything a command creates (hub databases and their WAL, reports, keys, logs) is private to
    # the hub's account from its first byte: no file is made readable and tightened afterwards.
    os.umask(0o077)
    try:
        app()
    except HealthmeshError as error:
        err_console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        sys.exit(_exit_code_for(error))
