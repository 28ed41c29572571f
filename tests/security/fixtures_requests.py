"""A hub served as a real process for the request, audit and least-privilege attacks.

``healthmesh hub serve`` in a subprocess, production environment (no ``HEALTHMESH_ENVIRONMENT``),
a strong random ``HEALTHMESH_SECRET_KEY``, a copy of a generated hub and a trained model. The
attacker talks HTTP to it on loopback and knows only what each test gives it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from healthmesh.api.launch import hub_serve_command, wait_until_ready
from healthmesh.hubkeys import HubKeys
from healthmesh.privacy.release import Release

HUB = "gyeonggi"


@dataclass
class ServedHub:
    url: str
    db: Path
    log: Path
    secret: str
    process: subprocess.Popen[bytes]

    def client_secret(self, role: str) -> str:
        return HubKeys(self.secret.encode()).client_secret(HUB, role)

    def token(self, role: str) -> str:
        """A token as a client of ``role`` gets one: the client-credentials flow at POST /token."""
        answer = httpx.post(
            f"{self.url}/token",
            data={
                "grant_type": "client_credentials",
                "client_id": role,
                "client_secret": self.client_secret(role),
            },
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role)}"}

    def stop(self) -> str:
        """Stop the service; its log (stdout and stderr)."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def production_env(secret: str) -> dict[str, str]:
    """No HEALTHMESH_* setting but the secret: the environment is production by default."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HEALTHMESH_")} | {
        "HEALTHMESH_SECRET_KEY": secret
    }


def train_model(folder: Path, secret: str) -> Path:
    """A t2dm-3y logistic model trained on the risk package's toy CDM, registered at ``folder``."""
    from healthmesh.cdm import create_hub
    from healthmesh.risk import train_task
    from healthmesh.risk.toycdm import populate_toy_cdm

    with create_hub(str(folder / "toy.duckdb")) as db:
        populate_toy_cdm(db, 1500, seed=11)
        release = Release(HubKeys(secret.encode()).release, 5)
        train_task(db, "t2dm-3y", folder / "t2dm", hub=HUB, models=["logistic-l1"], release=release)
    return folder / "t2dm"


def serve_hub(folder: Path, generated_hub: Path, model: bool = True) -> ServedHub:
    """Copy the generated hub into ``folder`` and serve it (with the t2dm model when ``model``)."""
    folder.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    db = folder / "hub.duckdb"
    shutil.copyfile(generated_hub, db)
    models = {"t2dm": train_model(folder, secret)} if model else {}
    log = folder / "service.log"
    command = hub_serve_command(HUB, db, free_port(), models=models)
    url = f"http://127.0.0.1:{command[command.index('--port') + 1]}"
    with open(log, "ab") as output:
        process = subprocess.Popen(
            command, env=production_env(secret), stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_until_ready(url, process, timeout_s=120)
    except Exception:
        process.terminate()
        process.wait(10)
        raise
    return ServedHub(url, db, log, secret, process)
