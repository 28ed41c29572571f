"""Settings: one object, read from ``HEALTHMESH_*`` environment variables.

Domain code never reads ``os.environ``; the CLI and the API build a ``Settings`` and pass typed
values down.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from healthmesh.errors import ConfigError

__all__ = ["PLACEHOLDER_SECRETS", "Settings", "hub_secret_key"]

PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "development", "dev"})

KEY_FILE_NAME = ".healthmesh-secret-key"


class Settings(BaseSettings):
    """Hub settings. ``environment`` is ``development`` or ``production``."""

    model_config = SettingsConfigDict(env_prefix="HEALTHMESH_", extra="ignore")

    environment: str = "development"
    secret_key: SecretStr | None = None
    database_url: str | None = None
    min_cell_count: int = 5
    # JSON {"client_id": {"secret": "...", "roles": ["researcher"]}} for the hub service's token endpoint.
    api_clients: SecretStr | None = None

    def checked_secret(self) -> str | None:
        """The configured secret, refusing a placeholder outside development."""
        if self.secret_key is None:
            if self.environment != "development":
                raise ConfigError(
                    "HEALTHMESH_SECRET_KEY is not set; production hubs need their own secret key"
                )
            return None
        value = self.secret_key.get_secret_value()
        if value.lower() in PLACEHOLDER_SECRETS and self.environment != "development":
            raise ConfigError(
                "HEALTHMESH_SECRET_KEY is a placeholder; set a random value of at least 32 characters"
            )
        return value


def hub_secret_key(configured: str | None, hub_dir: Path) -> tuple[bytes, bool]:
    """The hub's pseudonymisation key and whether it was created just now.

    The configured secret wins. Otherwise a random key is kept in ``hub_dir`` so that loads stay
    idempotent; there is never a fixed default key.
    """
    if configured:
        return configured.encode(), False
    key_file = hub_dir / KEY_FILE_NAME
    if key_file.exists():
        return key_file.read_text().strip().encode(), False
    hub_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    return key.encode(), True
