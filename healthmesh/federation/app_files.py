"""The Flower app folder that ``flwr run`` bundles: only a ``pyproject.toml``.

The ServerApp and ClientApp live in this package (installed in the same environment as the
SuperLink and SuperNodes), so the bundle carries no code, only the component names and the one
run setting: the path of the job file the coordinator wrote.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["APP_NAME", "write_flower_app"]

APP_NAME = "healthmesh-federation"

PYPROJECT = f"""\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{APP_NAME}"
version = "1.0.0"
description = "healthmesh federated analytics and learning across hubs"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "healthmesh"

[tool.flwr.app.components]
serverapp = "healthmesh.federation.server_app:app"
clientapp = "healthmesh.federation.client_app:app"

[tool.flwr.app.config]
job-file = ""
"""


def write_flower_app(folder: Path) -> Path:
    """Write the app folder (idempotent) and return it; its name is the app's name."""
    app_dir = folder / APP_NAME
    app_dir.mkdir(parents=True, exist_ok=True)
    pyproject = app_dir / "pyproject.toml"
    if not pyproject.exists() or pyproject.read_text() != PYPROJECT:
        pyproject.write_text(PYPROJECT)
    return app_dir
