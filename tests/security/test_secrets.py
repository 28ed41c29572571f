"""Secrets, tokens and files, attacked on a hub built and served as the README says (production mode).

The hub is made by the real command line (`healthmesh synth`, `healthmesh ingest`) and served by
`healthmesh hub serve` in a subprocess, with no ``HEALTHMESH_*`` variable set: production is what a
hub gets when nobody chooses. The attacker holds what a real one would: a researcher's token, the
ability to crack it offline, network access to the service.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest

from healthmesh.api.launch import hub_serve_command, start_hub_service
from healthmesh.cdm import connect
from healthmesh.hubkeys import HubKeys
from healthmesh.privacy.pseudonym import pseudonym

HUB = "busan"
PACKAGE = Path(__file__).resolve().parents[2] / "healthmesh"


def _env(**extra: str) -> dict[str, str]:
    """The caller's environment without any HEALTHMESH_* setting (production by default), plus ``extra``."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HEALTHMESH_")} | extra


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "healthmesh", *args],
        capture_output=True,
        text=True,
        env=_env(**env),
        timeout=300,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _assert_one_line_refusal(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == code, output
    assert "Traceback" not in output, output
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error:"), output
    # rich may wrap the one message; it is still one error line of text
    assert len([line for line in lines if line.startswith("error:")]) == 1, output
    for word in words:
        assert word in " ".join(lines), output


@dataclass
class Hub:
    folder: Path
    db: Path
    ndjson: Path
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def keys(self) -> HubKeys:  # the hub operator's view: the master secret in its private key file
        return HubKeys((self.folder / ".healthmesh-secret-key").read_text().strip().encode())

    def token(self, role: str) -> str:
        answer = httpx.post(
            f"{self.url}/token",
            data={
                "grant_type": "client_credentials",
                "client_id": role,
                "client_secret": self.keys.client_secret(HUB, role),
            },
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    def get(self, path: str, token: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """A fresh hub: generated, ingested and served by the real commands, production by default."""
    root = tmp_path_factory.mktemp("secrets-hub")
    ndjson, folder = root / "ndjson", root / "hub"
    done = _cli("synth", "--hub", HUB, "--patients", "12", "--seed", "3", "--out", str(ndjson), "--quiet")
    assert done.returncode == 0, done.stderr
    db = folder / "hub.duckdb"
    done = _cli("ingest", str(ndjson), "--db", str(db), "--hub", HUB, "--quiet")
    assert done.returncode == 0, done.stderr
    log = folder / "service.log"
    with pytest.MonkeyPatch.context() as patch:
        for name in [k for k in os.environ if k.startswith("HEALTHMESH_")]:
            patch.delenv(name)  # production by default: nothing chosen
        process, url = start_hub_service(HUB, db, _free_port(), log_file=log, timeout_s=120)
    try:
        yield Hub(folder, db, ndjson, url, process, log)
    finally:
        process.terminate()
        process.wait(30)


# -- weak secrets, production by default ---------------------------------------------------------


def test_a_production_hub_with_a_weak_secret_refuses_to_start(hub: Hub) -> None:
    for weak in ("x", "busan2024"):
        started = time.monotonic()
        done = subprocess.run(
            hub_serve_command(HUB, hub.db, _free_port()),
            capture_output=True,
            text=True,
            env=_env(HEALTHMESH_SECRET_KEY=weak),  # no HEALTHMESH_ENVIRONMENT: production
            timeout=120,
        )
        assert time.monotonic() - started < 60  # it refused; it did not come up and wait
        _assert_one_line_refusal(done, 3, "HEALTHMESH_SECRET_KEY")
    # The command line refuses it the same way.
    token = ("hub", "token", "--hub", HUB, "--db", str(hub.db), "--role", "admin")
    _assert_one_line_refusal(_cli(*token, HEALTHMESH_SECRET_KEY="busan2024"), 3, "HEALTHMESH_SECRET_KEY")
    # Development is the one place a weak secret passes, and it says so.
    relaxed = _cli(*token, HEALTHMESH_SECRET_KEY="busan2024", HEALTHMESH_ENVIRONMENT="development")
    assert relaxed.returncode == 0 and "development only" in relaxed.stderr


# -- tokens: separate keys, rotation, revocation, lifetime ---------------------------------------


def test_a_cracked_token_key_neither_forges_nor_relinks_and_rotation_rekeys_no_one(hub: Hub) -> None:
    researcher = hub.token("researcher")
    assert hub.get("/cohorts", researcher).status_code == 200
    header = jwt.get_unverified_header(researcher)
    claims = jwt.decode(researcher, options={"verify_signature": False})
    assert header["kid"] == "1" and claims["jti"]

    # Offline cracking of an HS256 token yields its signing key, and nothing more.
    cracked = hub.keys.token_signing(HUB, int(header["kid"]))
    assert (
        jwt.decode(researcher, cracked, algorithms=["HS256"], issuer=f"healthmesh:{HUB}")["sub"]
        == "researcher"
    )
    keys = hub.keys
    assert cracked not in {keys.master, keys.pseudonym, keys.release}
    assert cracked.hex() not in {
        keys.client_secret(HUB, role) for role in ("admin", "researcher", "clinician")
    }
    assert cracked not in {keys.token_signing(HUB, 2), keys.token_signing("gyeonggi", 1)}
    # ... it does not re-link pseudonyms: HMAC under the cracked key matches no stored person.
    patient_ids = [json.loads(line)["id"] for line in next(hub.ndjson.glob("Patient*.ndjson")).open()]
    stored_values = _persons(hub)
    assert {pseudonym(keys.pseudonym, pid, HUB) for pid in patient_ids} == stored_values  # the hub's own key
    assert not {pseudonym(cracked, pid, HUB) for pid in patient_ids} & stored_values

    # The admin rotates the token key while the service runs: every older token stops working.
    done = _cli("hub", "rotate-token-key", "--hub", HUB, "--db", str(hub.db))
    assert done.returncode == 0, done.stderr
    assert hub.get("/cohorts", researcher).status_code == 401
    forged = {
        kid: jwt.encode(
            {
                "sub": "ops",
                "roles": ["admin"],
                "iss": f"healthmesh:{HUB}",
                "iat": int(time.time()),
                "exp": int(time.time()) + 600,
                "jti": f"forged-{kid}",
            },
            cracked,
            algorithm="HS256",
            headers={"kid": kid},
        )  # fmt: skip
        for kid in ("1", "2")
    }
    assert hub.get("/audit", forged["1"]).status_code == 401  # the retired generation
    assert hub.get("/audit", forged["2"]).status_code == 401  # the new one: the cracked key does not sign it
    fresh = hub.token("researcher")
    assert jwt.get_unverified_header(fresh)["kid"] == "2"
    assert hub.get("/cohorts", fresh).status_code == 200

    # No person was re-keyed: loading the same files again after the rotation gives the same pseudonyms.
    again = hub.folder / "again.duckdb"
    assert _cli("ingest", str(hub.ndjson), "--db", str(again), "--hub", HUB, "--quiet").returncode == 0
    with connect(again, read_only=True) as db:
        assert {row[0] for row in db.rows("SELECT person_source_value FROM person")} == stored_values


def _persons(hub: Hub) -> set[str]:
    """The stored person pseudonyms (from a copy: the running service holds the database)."""
    copy = hub.folder / "persons-copy.duckdb"
    copy.write_bytes(hub.db.read_bytes())
    with connect(copy, read_only=True) as db:
        return {row[0] for row in db.rows("SELECT person_source_value FROM person")}


def test_a_revoked_token_is_refused_and_lifetimes_are_capped(hub: Hub) -> None:
    admin = hub.token("admin")
    assert hub.get("/audit", admin).status_code == 200
    jti = jwt.decode(admin, options={"verify_signature": False})["jti"]
    done = _cli("hub", "revoke", "--hub", HUB, "--db", str(hub.db), "--jti", jti)
    assert done.returncode == 0, done.stderr
    assert hub.get("/audit", admin).status_code == 401
    assert hub.get("/audit", hub.token("admin")).status_code == 200  # only that token
    _assert_one_line_refusal(
        _cli("hub", "token", "--hub", HUB, "--db", str(hub.db), "--role", "admin", "--ttl", "10000000"),
        3,
        "24 h",
    )
    long_lived = _cli("hub", "token", "--hub", HUB, "--db", str(hub.db), "--role", "admin", "--ttl", "86400")
    assert long_lived.returncode == 0, long_lived.stderr
    assert hub.get("/audit", long_lived.stdout.strip()).status_code == 200


# -- files ---------------------------------------------------------------------------------------


def test_a_fresh_hubs_files_are_private_from_creation(hub: Hub) -> None:
    admin = hub.token("admin")
    assert hub.get("/audit", admin).status_code == 200  # a guarded request writes the audit log: the WAL
    files = {
        "database": hub.db,
        "WAL": hub.db.with_name(hub.db.name + ".wal"),
        "ingest report": hub.db.with_name(hub.db.name + ".ingest-report.json"),
        "key file": hub.folder / ".healthmesh-secret-key",
        "service log": hub.log,
    }
    for what, path in files.items():
        assert path.exists(), f"no {what} at {path}"
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o600, f"{what} {path.name} is {oct(mode)}"
    token_state = hub.db.with_name(hub.db.name + ".tokens.json")
    if token_state.exists():
        assert stat.S_IMODE(token_state.stat().st_mode) == 0o600
    # Nothing is made private after the fact: no chmod anywhere in the package.
    chmods = [
        f"{path.relative_to(PACKAGE.parent)}:{number}"
        for path in PACKAGE.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bchmod\(", line)
    ]
    assert chmods == []
