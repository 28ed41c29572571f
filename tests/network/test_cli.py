"""The coordinator's admin commands: hubs and researchers registered, credentials kept private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from healthmesh.cli import app
from healthmesh.errors import ConfigError
from healthmesh.network import NetworkStore


def test_the_admin_registers_hubs_and_researchers_whose_credentials_work(tmp_path: Path) -> None:
    runner = CliRunner()
    db = tmp_path / "net.sqlite"
    credential = tmp_path / "busan.credential"
    added = runner.invoke(
        app,
        ["network", "add-hub", "--db", str(db), "--name", "busan", "--region", "busan", "--role", "demonstration",
         "--url", "https://busan.example:8443", "--credential-file", str(credential)],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert stat.S_IMODE(credential.stat().st_mode) == 0o600
    assert credential.read_text() not in added.output  # shown nowhere but in its private file
    researcher = runner.invoke(app, ["network", "add-researcher", "--db", str(db), "--name", "alice"])
    assert researcher.exit_code == 0
    store = NetworkStore(db)
    assert store.authenticate(credential.read_text().strip()).name == "busan"
    assert store.authenticate(researcher.output.strip()).kind == "researcher"
    listed = runner.invoke(app, ["network", "hubs", "--db", str(db)])
    assert "busan" in listed.output and "demonstration" in listed.output


def test_a_bad_name_or_a_half_network_option_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEALTHMESH_NETWORK_CREDENTIAL", raising=False)
    runner = CliRunner()
    bad = runner.invoke(
        app, ["network", "add-hub", "--db", str(tmp_path / "n.sqlite"), "--name", "Busan Hub"]
    )
    assert isinstance(bad.exception, ConfigError) and "lower-case" in str(bad.exception)
    db = tmp_path / "hub.duckdb"
    db.touch()
    half = runner.invoke(
        app, ["hub", "serve", "--hub", "busan", "--db", str(db), "--network-credential-file", str(db)]
    )
    assert isinstance(half.exception, ConfigError) and "need --network" in str(half.exception)
    no_credential = runner.invoke(
        app, ["hub", "serve", "--hub", "busan", "--db", str(db), "--network", "https://coordinator.example"]
    )
    assert isinstance(no_credential.exception, ConfigError) and "credential" in str(no_credential.exception)
