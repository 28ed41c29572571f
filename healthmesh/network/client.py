"""A researcher's client of the coordinator (``healthmesh study``, the benchmark, the tests).

Every failure is a ``FederationError`` (or ``AuthError`` for a refused credential) with the
coordinator's one-line reason; a coordinator that cannot be reached says so, with its address.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx

from healthmesh.errors import AuthError, ConfigError, FederationError

__all__ = ["NetworkClient", "raise_for_answer", "tls_context"]


def tls_context(ca: Path | str | None) -> ssl.SSLContext:
    """What HTTPS trusts: the system's CAs, or only ``ca`` (a network's own CA, PEM)."""
    if ca is not None and not Path(ca).is_file():
        raise ConfigError(f"no CA certificate at {ca}")
    return ssl.create_default_context(cafile=str(ca) if ca is not None else None)


def raise_for_answer(response: httpx.Response, what: str) -> Any:
    """The JSON of a 2xx answer; otherwise the coordinator's reason as an error."""
    if response.is_success:
        return response.json()
    try:
        reason = response.json().get("detail", response.text)
    except ValueError:
        reason = response.text
    error = AuthError if response.status_code in (401, 403) else FederationError
    raise error(f"{what}: {reason} (HTTP {response.status_code})")


class NetworkClient:
    """Calls the coordinator at ``url`` with a researcher's ``token``."""

    def __init__(
        self, url: str, token: str, *, timeout_s: float = 40.0, ca: Path | str | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            verify=tls_context(ca),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NetworkClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise FederationError(
                f"{what}: the coordinator at {self.url} cannot be reached ({error})"
            ) from None
        return raise_for_answer(response, what)

    def submit(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/studies", "submit", json=request)  # type: ignore[no-any-return]

    def study(self, study_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        return self._call(  # type: ignore[no-any-return]
            "GET", f"/studies/{study_id}", f"study {study_id}", params={"wait": wait_s}
        )

    def wait_finished(self, study_id: str, timeout_s: float) -> dict[str, Any]:
        """The study once every hub has answered (or refused, or failed), or as it is at ``timeout_s``."""
        import time

        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            study = self.study(study_id, wait_s=max(0.0, min(30.0, remaining)))
            if study["state"] == "finished" or remaining <= 0:
                return study

    def studies(self) -> list[dict[str, Any]]:
        return self._call("GET", "/studies", "studies")  # type: ignore[no-any-return]

    def hubs(self) -> list[dict[str, Any]]:
        return self._call("GET", "/hubs", "hubs")  # type: ignore[no-any-return]
