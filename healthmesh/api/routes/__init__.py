"""The hub service's routes, one module per area; ``ROUTERS`` lists them in the order they mount."""

from __future__ import annotations

from healthmesh.api.routes import audit, catalog, cohorts, forecast, ingest, risk, system

ROUTERS = (
    system.router,
    ingest.router,
    catalog.router,
    cohorts.router,
    risk.router,
    forecast.router,
    audit.router,
)

__all__ = ["ROUTERS"]
