"""What made a request cheaper must not make it weaker: a token checked once is still refused once it
is revoked, its key rotated or its lifetime over; a body is still refused past the nesting limit
whatever shortcut the guard takes; the body the guard read is the body the route gets (bytes, or
parsed into its model)."""

from __future__ import annotations

import time
from datetime import datetime, tzinfo
from pathlib import Path

import jwt
import pytest
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.testclient import TestClient
from pydantic import BaseModel

from healthmesh.api import auth
from healthmesh.api.auth import VERIFIED_CACHE_SIZE, TokenIssuer, default_clients
from healthmesh.api.json_route import JsonRoute
from healthmesh.api.limits import MAX_JSON_DEPTH, RequestGuard
from healthmesh.api.tokenstate import TokenState
from healthmesh.hubkeys import HubKeys

HUB = "gyeonggi"
KEYS = HubKeys(b"3f9a61c2d8e04b7f9a1c5e2d8b0f4a6c")


@pytest.fixture
def issuer(tmp_path: Path) -> TokenIssuer:
    return TokenIssuer(KEYS, HUB, default_clients(KEYS, HUB), state=TokenState(tmp_path / "hub.tokens.json"))


def _refusal(issuer: TokenIssuer, token: str) -> str:
    with pytest.raises(HTTPException) as refused:
        issuer.verify(token)
    assert refused.value.status_code == 401
    return str(refused.value.detail)


def test_a_token_checked_before_is_refused_once_revoked(issuer: TokenIssuer) -> None:
    token = issuer.issue("dr-kim", ("clinician",))
    assert issuer.verify(token).subject == "dr-kim"
    assert issuer.verify(token).roles == ("clinician",)  # the second use, from what the first established
    issuer.state.revoke(jwt.decode(token, options={"verify_signature": False})["jti"])
    assert "revoked" in _refusal(issuer, token)
    other = issuer.issue("dr-lee", ("clinician",))  # revocation is by token, not by the whole cache
    assert issuer.verify(other).subject == "dr-lee"


def test_a_token_checked_before_is_refused_after_the_key_is_rotated(issuer: TokenIssuer) -> None:
    token = issuer.issue("analyst", ("researcher",))
    issuer.verify(token)
    issuer.state.rotate()
    assert "current token key" in _refusal(issuer, token)
    assert issuer.verify(issuer.issue("analyst", ("researcher",))).subject == "analyst"


def test_a_token_checked_before_is_refused_once_expired(
    issuer: TokenIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = issuer.issue("analyst", ("researcher",), ttl_s=60)
    issuer.verify(token)
    later = time.time() + 61

    class Later(datetime):  # PyJWT's clock, a minute on
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Later:
            return cls.fromtimestamp(later, tz)

    monkeypatch.setattr(auth.time, "time", lambda: later)
    monkeypatch.setattr(jwt.api_jwt, "datetime", Later)
    assert "expired" in _refusal(issuer, token)


def test_only_the_first_use_of_a_token_pays_for_its_signature(
    issuer: TokenIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded = 0
    real_decode = jwt.decode_complete

    def counting_decode(*args: object, **kwargs: object) -> object:
        nonlocal decoded
        decoded += 1
        return real_decode(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(auth.jwt, "decode_complete", counting_decode)
    token = issuer.issue("dr-kim", ("clinician",))
    for _ in range(5):
        issuer.verify(token)
    assert decoded == 1
    # A token changed by one character is another string: checked in full, and refused.
    forged = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert "invalid token" in _refusal(issuer, forged)
    assert decoded == 2


def test_a_forged_token_is_never_remembered(issuer: TokenIssuer) -> None:
    foreign = TokenIssuer(HubKeys(b"another-hub-secret-of-32-bytes!!"), HUB, {}).issue("mallory", ("admin",))
    for _ in range(2):
        assert "invalid token" in _refusal(issuer, foreign)


def test_the_remembered_tokens_are_bounded(issuer: TokenIssuer, monkeypatch: pytest.MonkeyPatch) -> None:
    assert VERIFIED_CACHE_SIZE <= 10_000
    monkeypatch.setattr(auth, "VERIFIED_CACHE_SIZE", 8)  # the bound the code reads, made small
    tokens = [issuer.issue(f"user-{i}", ("researcher",)) for i in range(20)]
    for token in tokens:
        issuer.verify(token)
    assert len(issuer._verified) <= 8
    assert issuer.verify(tokens[0]).subject == "user-0"  # forgotten, then checked again in full


class Echo(BaseModel):
    text: str


def _guarded_app(issuer: TokenIssuer) -> FastAPI:
    """The request guard in front of two routes of the hub's route class: raw bytes, and a parsed body."""
    router = APIRouter(route_class=JsonRoute)

    @router.post("/raw")
    async def raw(request: Request) -> Response:
        return Response(await request.body(), media_type="application/octet-stream")

    @router.post("/echo")
    async def echo(body: Echo) -> dict[str, str]:
        return {"text": body.text}

    app = FastAPI()
    app.include_router(router)
    app.add_middleware(RequestGuard, verify=issuer.verify, is_public=lambda path: False)
    return app


@pytest.fixture
def guarded(issuer: TokenIssuer) -> tuple[TestClient, dict[str, str]]:
    token = issuer.issue("analyst", ("researcher",))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return TestClient(_guarded_app(issuer)), headers


def test_nesting_one_past_the_limit_is_refused_and_at_the_limit_is_read(
    guarded: tuple[TestClient, dict[str, str]],
) -> None:
    client, headers = guarded
    at_limit = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH  # as many openings as the limit: no scan needed
    past = b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)
    answer = client.post("/raw", content=at_limit, headers=headers)
    assert answer.status_code == 200 and answer.content == at_limit
    answer = client.post("/raw", content=past, headers=headers)
    assert answer.status_code == 413
    assert f"nests {MAX_JSON_DEPTH + 1} levels deep" in answer.json()["detail"]
    deep_objects = b'{"a":' * 200 + b"1" + b"}" * 200
    answer = client.post("/echo", content=deep_objects, headers=headers)
    assert answer.status_code == 413 and "levels deep" in answer.json()["detail"]  # past the limit: refused


def test_brackets_inside_strings_do_not_count_as_nesting(guarded: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = guarded
    text = "[{" * 500 + "}]" * 250 + "mm[Hg]"
    answer = client.post("/echo", json={"text": text}, headers=headers)
    assert answer.status_code == 200 and answer.json() == {"text": text}


def test_the_route_gets_the_body_the_guard_read(guarded: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = guarded
    bundle = (
        b'{"resourceType": "Bundle", "entry": [' + b",".join([b'{"resource": {"id": "x"}}'] * 2000) + b"]}"
    )
    answer = client.post("/raw", content=bundle, headers=headers)  # over 64 openings: scanned, then passed on
    assert answer.status_code == 200 and answer.content == bundle
    answer = client.post("/echo", json={"text": "read once"}, headers=headers)
    assert answer.json() == {"text": "read once"}
    assert client.post("/echo", content=b"{", headers={"Content-Type": "application/json"}).status_code == 401
