"""The hub service: a FastAPI application over one hub's CDM, with tokens, roles and an audit log.

``create_app(config)`` builds it; ``config_from_settings`` reads the ``HEALTHMESH_*`` settings;
``healthmesh hub serve`` runs it with uvicorn and ``start_hub_service`` starts that as a subprocess.
Routes live in ``routes/`` (one module per area), role guards in ``auth``, the log in ``audit``.
"""

from __future__ import annotations

from healthmesh.api.app import PUBLIC_PATHS, AuditMiddleware, config_from_settings, create_app
from healthmesh.api.audit import AUDIT_TABLE, read_audit
from healthmesh.api.auth import (
    ROLES,
    Client,
    Principal,
    TokenIssuer,
    default_clients,
    iter_routes,
    require_roles,
    route_roles,
)
from healthmesh.api.deps import HubConfig, HubState
from healthmesh.api.launch import hub_serve_command, role_tokens, start_hub_service, wait_until_ready

__all__ = [
    "AUDIT_TABLE",
    "PUBLIC_PATHS",
    "ROLES",
    "AuditMiddleware",
    "Client",
    "HubConfig",
    "HubState",
    "Principal",
    "TokenIssuer",
    "config_from_settings",
    "create_app",
    "default_clients",
    "hub_serve_command",
    "iter_routes",
    "read_audit",
    "require_roles",
    "role_tokens",
    "route_roles",
    "start_hub_service",
    "wait_until_ready",
]
