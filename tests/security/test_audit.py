"""The audit log, attacked on a served hub: every attempt is on record, bounded, and tampering shows.

The attacker guesses client secrets at ``POST /token``, sends a 60,000-character path without a
token, and then, holding write access to the hub database (the service stopped), changes, deletes
or inserts audit rows; ``healthmesh audit verify`` must name the entry each time.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from healthmesh.api.audit import AUDIT_TABLE
from healthmesh.cdm import connect

from .fixtures_requests import ServedHub, production_env, serve_hub


@pytest.fixture(scope="module")
def audited(
    generated_hub: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServedHub, list[dict]]]:
    """A hub that took the attacker's requests, stopped; with its audit log as an admin read it."""
    hub = serve_hub(tmp_path_factory.mktemp("audit"), generated_hub, model=False)
    try:
        for client_id, secret in (("researcher", "guess-1"), ("admin", "guess-2"), ("nobody", "x" * 40)):
            refused = httpx.post(
                f"{hub.url}/token",
                data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
            )
            assert refused.status_code == 401
        httpx.post(
            f"{hub.url}/token",
            auth=("admin", "wrong-basic-secret"),
            data={"grant_type": "client_credentials"},
        )
        long_path = "/" + "A" * 60_000
        assert httpx.get(f"{hub.url}{long_path}").status_code in (401, 404, 414)
        assert httpx.post(f"{hub.url}/risk/{'m' * 60_000}/score", content=b"{}").status_code in (401, 414)
        admin = hub.headers("admin")  # a successful token request, on record too
        assert httpx.get(f"{hub.url}/catalog", headers=admin).status_code == 200
        # A loopback caller claiming to be someone else: the audit must name the peer, not the claim.
        claimed = {**admin, "X-Forwarded-For": "198.51.100.66", "Forwarded": "for=198.51.100.66"}
        assert httpx.get(f"{hub.url}/catalog", headers=claimed).status_code == 200
        entries = httpx.get(f"{hub.url}/audit", params={"limit": 1000}, headers=admin).json()["entries"]
    finally:
        log = hub.stop()
    assert "Traceback" not in log, log[-3000:]
    yield hub, entries


def _verify(db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "healthmesh", "audit", "verify", "--db", str(db), "--hub", "gyeonggi"],
        capture_output=True, text=True, timeout=120, env=production_env("unused-by-verify"),
    )  # fmt: skip


def test_failed_and_successful_token_requests_are_audited_with_the_caller_address(
    audited: tuple[ServedHub, list[dict]],
) -> None:
    _, entries = audited
    tokens = [e for e in entries if e["route"] == "/token"]
    failed = [(e["subject"], e["status"]) for e in tokens if e["status"] == 401]
    assert {("researcher", 401), ("admin", 401), ("nobody", 401)} <= set(failed)
    assert len(failed) == 4  # the HTTP Basic attempt too
    assert any(e["subject"] == "admin" and e["status"] == 200 for e in tokens)
    for entry in tokens:
        host, _, port = entry["client"].rpartition(":")
        assert host == "127.0.0.1" and port.isdigit(), entry["client"]
        assert entry["outcome"] in ("ok", "unauthenticated")


def test_a_forwarded_for_header_from_a_loopback_caller_does_not_rename_it_in_the_audit(
    audited: tuple[ServedHub, list[dict]],
) -> None:
    _, entries = audited
    catalog = [e for e in entries if e["route"] == "/catalog"]
    assert len(catalog) >= 2
    assert all(e["client"].rpartition(":")[0] == "127.0.0.1" for e in catalog), [e["client"] for e in catalog]
    assert not any("198.51.100.66" in (e["client"] or "") for e in entries)


def test_an_anonymous_long_path_leaves_a_bounded_route(audited: tuple[ServedHub, list[dict]]) -> None:
    hub, entries = audited
    anonymous = [e for e in entries if e["subject"] == "anonymous"]
    assert len(anonymous) >= 1
    with connect(hub.db, read_only=True) as db:
        longest = db.scalar(f"SELECT max(length(route)) FROM {AUDIT_TABLE}")
        longest_field = db.scalar(
            f"SELECT max(greatest(length(subject), length(coalesce(purpose, '')), length(coalesce(client, ''))))"
            f" FROM {AUDIT_TABLE}"
        )
    assert longest <= 200 and longest_field <= 200
    # Both long-path requests reached the log, each as a route template, not as the text sent.
    assert {"(no route)", "/risk/{model}/score"} <= {e["route"] for e in anonymous}


def test_the_untouched_chain_verifies(audited: tuple[ServedHub, list[dict]]) -> None:
    hub, entries = audited
    done = _verify(hub.db)
    assert done.returncode == 0, done.stdout + done.stderr
    count = int(done.stdout.split("gyeonggi: ")[1].split()[0])
    assert count >= len(entries)


@pytest.mark.parametrize(
    ("attack", "statement"),
    [
        ("changed", f"UPDATE {AUDIT_TABLE} SET subject = 'someone-else' WHERE entry_id = 3"),
        ("changed status", f"UPDATE {AUDIT_TABLE} SET status = 200, outcome = 'ok' WHERE entry_id = 3"),
        ("deleted", f"DELETE FROM {AUDIT_TABLE} WHERE entry_id = 3"),
        (
            "inserted",
            f"INSERT INTO {AUDIT_TABLE} SELECT entry_id + 1000, logged_at, 'ghost', role, method, route, purpose, "
            f"rows_touched, status, outcome, client, persons, entry_hash, entry_hash FROM {AUDIT_TABLE} "
            "WHERE entry_id = (SELECT max(entry_id) FROM hm_audit_log)",
        ),
    ],
)
def test_tampering_with_the_table_breaks_the_chain_at_that_entry(
    audited: tuple[ServedHub, list[dict]], tmp_path: Path, attack: str, statement: str
) -> None:
    hub, _ = audited
    copy = tmp_path / "tampered.duckdb"
    shutil.copyfile(hub.db, copy)
    with connect(copy) as db:
        last = int(db.scalar(f"SELECT max(entry_id) FROM {AUDIT_TABLE}"))
        db.execute(statement)
    done = _verify(copy)
    output = done.stdout + done.stderr
    assert done.returncode != 0, f"{attack}: {output}"
    assert "Traceback" not in output
    named = 4 if attack == "deleted" else (last + 1000 if attack == "inserted" else 3)
    assert f"audit entry {named}:" in output, f"{attack}: {output}"


def test_the_caller_address_believes_x_forwarded_for_only_from_a_trusted_proxy() -> None:
    from healthmesh.api.app import caller_address

    spoofed = {"client": ("203.0.113.9", 40000), "headers": [(b"x-forwarded-for", b"10.0.0.1")]}
    assert caller_address(spoofed, frozenset()) == "203.0.113.9:40000"
    proxied = {"client": ("10.1.1.1", 443), "headers": [(b"x-forwarded-for", b"10.0.0.1, 198.51.100.4")]}
    # The right-most hop is what the trusted proxy saw; the rest is the client's own claim.
    assert caller_address(proxied, frozenset({"10.1.1.1"})) == "198.51.100.4 (via 10.1.1.1:443)"
    assert caller_address(proxied, frozenset({"10.9.9.9"})) == "10.1.1.1:443"
