"""Requests, attacked on a served hub: nothing is read before the caller is known, nothing unbounded is read.

The attacker sends raw HTTP to ``healthmesh hub serve`` (production mode): anonymous and
authenticated bodies of 60 MB (declared and streamed), JSON nested 10,000 deep, a cohort of 1,000
rules. Every answer is a 4xx with a one-line reason, and the service log holds no traceback.
"""

from __future__ import annotations

import json
import re
import select
import socket
import ssl
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthmesh.api.limits import json_depth, statement_timeout
from healthmesh.cdm import connect

from .fixtures_requests import ServedHub

MB = 1024 * 1024


@pytest.fixture
def hub(served_hub: ServedHub) -> ServedHub:
    """The session's served hub (conftest): its log is checked for tracebacks when it stops."""
    return served_hub


def raw_post(
    hub: ServedHub, path: str, size: int, *, token: str | None = None, declare: bool = True
) -> tuple[int, str, int]:
    """POST ``size`` bytes as an attacker's client would, stopping once the hub answers.

    Returns the status, the body of the answer, and how many body bytes had gone out by then.
    """
    address = urlsplit(hub.url)
    sock = socket.create_connection((address.hostname, address.port), timeout=60)
    head = [f"POST {path} HTTP/1.1", f"Host: {address.netloc}", "Content-Type: application/json"]
    head += [f"Authorization: Bearer {token}"] if token else []
    head += [f"Content-Length: {size}"] if declare else ["Transfer-Encoding: chunked"]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    chunk = b" " * (256 * 1024)
    sent = 0
    try:
        while sent < size and not select.select([sock], [], [], 0)[0]:
            piece = chunk[: size - sent]
            sock.sendall(piece if declare else b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
        if not declare and sent >= size:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the hub closed the connection on a refused body: its answer is already waiting
    answer = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        answer += data
        if b"\r\n\r\n" in answer:
            head_part, _, body = answer.partition(b"\r\n\r\n")
            length = re.search(rb"content-length: *(\d+)", head_part, re.IGNORECASE)
            if length and len(body) >= int(length.group(1)):
                break
    sock.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line, "no answer"
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2].decode(errors="replace"), sent


def test_an_anonymous_body_is_not_read_an_open_brace_gets_401(hub: ServedHub) -> None:
    for path in ("/cohorts/count", "/fhir/Bundle", "/risk/t2dm/score"):
        answer = httpx.post(f"{hub.url}{path}", content=b"{", headers={"Content-Type": "application/json"})
        assert answer.status_code == 401, (path, answer.text)
        assert "bearer token" in answer.json()["detail"]
    forged = httpx.post(
        f"{hub.url}/cohorts/count", content=b"{", headers={"Authorization": "Bearer eyJhbGciOiJub25lIn0.e30."}
    )
    assert forged.status_code == 401


def test_an_anonymous_60_mb_body_is_refused_unread(hub: ServedHub) -> None:
    status, body, sent = raw_post(hub, "/cohorts/count", 60 * MB)
    assert status == 413 and "at most" in json.loads(body)["detail"]
    assert sent < 8 * MB, f"{sent} bytes went out before the refusal"
    # Streamed, with no length declared, to the one route an anonymous caller may post to.
    status, body, sent = raw_post(hub, "/token", 60 * MB, declare=False)
    assert status == 413 and sent < 8 * MB
    # And streamed to a guarded route: refused for want of a token, before any of it is read.
    status, _, sent = raw_post(hub, "/cohorts/count", 60 * MB, declare=False)
    assert status == 401 and sent < 8 * MB


def test_an_authenticated_60_mb_body_is_refused_at_the_routes_limit(hub: ServedHub) -> None:
    admin, researcher = hub.token("admin"), hub.token("researcher")
    status, body, _ = raw_post(hub, "/fhir/Bundle", 60 * MB, token=admin)
    assert status == 413 and str(20 * MB) in json.loads(body)["detail"]
    assert json.loads(body)["resourceType"] == "OperationOutcome"  # what a FHIR client reads
    status, _, sent = raw_post(hub, "/fhir/Bundle", 60 * MB, token=admin, declare=False)
    assert status == 413 and sent < 40 * MB  # read up to its 20 MB limit, no further
    status, _, sent = raw_post(hub, "/cohorts/count", 60 * MB, token=researcher, declare=False)
    assert status == 413 and sent < 8 * MB  # 64 KB for a cohort definition
    status, _, _ = raw_post(hub, "/risk/t2dm/score", 60 * MB, token=researcher)
    assert status == 413


def test_json_nested_10000_deep_is_refused_before_parsing(hub: ServedHub) -> None:
    headers = hub.headers("researcher") | {"Content-Type": "application/json"}
    arrays = b'{"definition": {"x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}}"
    objects = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    for path in ("/cohorts/count", "/risk/t2dm/score"):
        for body in (arrays, objects):
            answer = httpx.post(f"{hub.url}{path}", content=body, headers=headers, timeout=60)
            assert answer.status_code in (413, 422), (path, answer.status_code, answer.text[:200])
            assert "levels deep" in answer.json()["detail"]


def test_a_cohort_of_1000_rules_is_refused_with_the_reason(hub: ServedHub) -> None:
    definition = {
        "name": "huge",
        "concept_sets": {"visit": [{"concept_id": 9202}]},
        "entry": {"domain": "visit", "concept_set": "visit"},
        "inclusion_rules": [{"name": f"aged {i} or more", "age_min": i % 90} for i in range(1000)],
    }
    answer = httpx.post(
        f"{hub.url}/cohorts/count",
        json={"definition": definition},
        headers=hub.headers("researcher"),
        timeout=60,
    )
    assert answer.status_code == 422, answer.text[:300]
    assert "at most 40" in answer.json()["detail"] and "\n" not in answer.json()["detail"]


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def test_the_api_page_loads_only_from_the_hub(hub: ServedHub) -> None:
    page = httpx.get(f"{hub.url}/docs")
    assert page.status_code == 200
    parser = _References()
    parser.feed(page.text)
    inline = re.findall(r"""(?:url|Url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
    references = parser.urls + inline
    assert len(references) >= 3, references
    for reference in references:
        assert reference.startswith("/") and not reference.startswith("//"), f"{reference} leaves the hub"
        assert httpx.get(f"{hub.url}{reference}").status_code == 200, reference
    assert not re.search(r"https?://", page.text), "an absolute URL on the page"
    assert "validatorUrl" in page.text  # the spec validator badge (validator.swagger.io) is off
    script = httpx.get(f"{hub.url}/static/swagger/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 500_000


def test_a_long_query_is_stopped_at_the_statement_limit(tmp_path: Path) -> None:
    """The per-request timeout: a DuckDB statement past it is interrupted and answered 503."""
    from fastapi import HTTPException

    with connect(tmp_path / "hub.duckdb") as db, db.cursor() as cursor:
        started = time.monotonic()
        with pytest.raises(HTTPException) as refused, statement_timeout(cursor, 0.5):
            cursor.scalar("SELECT count(*) FROM range(100000000000) a, range(10) b")
        assert refused.value.status_code == 503 and time.monotonic() - started < 10
        assert cursor.scalar("SELECT 1") == 1  # the cursor still answers the next statement


def _reference_depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max([_reference_depth(v) for v in value.values()], default=0)
    if isinstance(value, list):
        return 1 + max([_reference_depth(v) for v in value], default=0)
    return 0


_TRICKY = st.sampled_from(['a\\"[', "]]\\\\", "{x}", '\\\\\\"]', '""', "\n[\t", "é{", "\\", "\\\\", '"'])
_JSON = st.recursive(
    st.one_of(st.none(), st.integers(), _TRICKY, st.text(max_size=5)),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(_TRICKY | st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=30,
)


@given(value=_JSON, ascii_only=st.booleans(), indent=st.sampled_from([None, 1]))
@settings(max_examples=300, deadline=None)
def test_the_depth_check_reads_strings_and_escapes_as_a_parser_does(
    value: object, ascii_only: bool, indent: int | None
) -> None:
    """Brackets and escaped quotes inside strings cannot hide nesting from the check, nor fake it."""
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent).encode()
    assert json_depth(text, limit=1_000) == _reference_depth(value)
    assert json_depth(text, limit=2) == min(_reference_depth(value), 3)  # past the limit: limit + 1


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM), as a hub operator would make one."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hub.local")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = folder / "hub.crt", folder / "hub.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def test_the_hub_serves_https_when_given_a_certificate(generated_hub: Path, tmp_path: Path) -> None:
    import secrets
    import shutil
    import subprocess

    from healthmesh.api.launch import hub_serve_command

    from .fixtures_requests import HUB, free_port, production_env

    cert_file, key_file = _self_signed(tmp_path)
    trusted = ssl.create_default_context(cafile=str(cert_file))
    db = tmp_path / "hub.duckdb"
    shutil.copyfile(generated_hub, db)
    port = free_port()
    command = hub_serve_command(HUB, db, port) + [
        "--ssl-certfile",
        str(cert_file),
        "--ssl-keyfile",
        str(key_file),
    ]
    process = subprocess.Popen(
        command, env=production_env(secrets.token_hex(32)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            try:
                answer = httpx.get(f"https://127.0.0.1:{port}/health", verify=trusted, timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the hub did not answer over HTTPS"
                time.sleep(0.3)
        assert answer.status_code == 200
        with pytest.raises(httpx.HTTPError):  # no plain-HTTP answer on the same port
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).raise_for_status()
    finally:
        process.terminate()
        process.wait(30)
