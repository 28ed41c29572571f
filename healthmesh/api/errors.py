"""One exception handler: healthmesh errors and bad requests become HTTP answers with a one-line reason.

Bad input is the caller's to fix (4xx); only a fault of the hub itself is a 5xx. The body is
``{"detail": "<one line>"}``; a traceback never leaves the service.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from healthmesh.errors import (
    AuthError,
    CDMError,
    CohortError,
    ConfigError,
    FederationError,
    ForecastError,
    HealthmeshError,
    IngestError,
    ModelError,
    PrivacyError,
    QualityError,
    VocabularyError,
)

__all__ = ["HTTP_STATUS", "install_error_handlers", "status_for"]

log = logging.getLogger("healthmesh.api")

FHIR_PREFIX = "/fhir/"

HTTP_STATUS: dict[type[HealthmeshError], int] = {
    AuthError: 401,
    IngestError: 422,
    CohortError: 422,
    ModelError: 422,
    ForecastError: 422,
    PrivacyError: 422,
    QualityError: 422,
    ConfigError: 500,
    CDMError: 500,
    VocabularyError: 500,
    FederationError: 502,
}


def status_for(error: HealthmeshError) -> int:
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:500]


def _validation_reason(error: RequestValidationError) -> str:
    first = error.errors()[0] if error.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
    return _one_line(f"{where}: {first.get('msg', 'invalid request')}")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HealthmeshError)
    async def healthmesh_error(request: Request, error: HealthmeshError) -> JSONResponse:
        status = status_for(error)
        if status >= 500:
            log.error("hub fault on %s %s: %s", request.method, request.url.path, error)
        return JSONResponse({"detail": _one_line(str(error))}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        reason = _validation_reason(error)
        if request.url.path.startswith(FHIR_PREFIX):  # FHIR clients expect an OperationOutcome
            issue = {"severity": "error", "code": "invalid", "diagnostics": reason}
            body = {"resourceType": "OperationOutcome", "issue": [issue], "detail": reason}
            return JSONResponse(body, status_code=422, media_type="application/fhir+json")
        return JSONResponse({"detail": reason}, status_code=422)

    @app.exception_handler(RecursionError)
    async def too_deep(request: Request, error: RecursionError) -> JSONResponse:
        # The request guard refuses deep JSON before parsing; this catches any other input that nests.
        return JSONResponse({"detail": "the input nests too deeply to read"}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(error).__name__})"}, status_code=500)
