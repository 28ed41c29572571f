"""Self-signed certificates for loopback, and the CLI's one-line errors (no network started)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509

from healthmesh.errors import EXIT_CODES, FederationError
from healthmesh.federation.tls import make_self_signed_tls


def test_server_certificate_is_signed_by_the_ca_for_loopback(tmp_path: Path) -> None:
    files = make_self_signed_tls(tmp_path / "tls")
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)  # raises if the signature does not check out
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert files.server_key.stat().st_mode & 0o077 == 0


def test_train_table_rejects_bad_sites_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    from healthmesh.cli import main

    argv = [
        "healthmesh",
        "federate",
        "train-table",
        "--site",
        "only",
        "--target",
        "y",
        "--out",
        str(tmp_path),
    ]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == EXIT_CODES[FederationError]
    err = capsys.readouterr().err.strip()
    assert "--site must be NAME=FILE; got 'only'" in err and len(err.splitlines()) == 1


def test_train_table_rejects_unknown_strategy(site_tables: dict[str, Path], tmp_path: Path) -> None:
    from healthmesh.federation import train_table

    try:
        train_table(site_tables, "target", tmp_path, strategy="fedsgd")
    except FederationError as error:
        assert "fedavg, fedprox, fedadam" in str(error)
    else:
        raise AssertionError("an unknown strategy must be refused")


def test_lazy_package_exports_resolve() -> None:
    import healthmesh.federation as federation

    for name in federation.__all__:
        assert getattr(federation, name) is not None, name
