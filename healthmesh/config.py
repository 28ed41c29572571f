"""Settings: one object, read from ``HEALTHMESH_*`` environment variables, and the hub's keys.

Domain code never reads ``os.environ``; the CLI and the API build a ``Settings`` and pass typed
values down. ``hub_keys(settings, db_path)`` is the one way any entry point gets a hub's keys.

Production is the default environment. There a configured secret must pass
``check_secret_strength``; development accepts a weak one with a warning (a laptop hub with a
memorable secret), and nothing else. Without a configured secret the hub keeps a random master
secret in a key file beside its database, created private (0600) in one atomic ``open``.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from healthmesh.errors import ConfigError
from healthmesh.hubkeys import HubKeys, check_secret_strength

__all__ = ["ENVIRONMENTS", "KEY_FILE_NAME", "Settings", "hub_keys", "key_file_for", "write_private"]

ENVIRONMENTS = ("production", "development")
KEY_FILE_NAME = ".healthmesh-secret-key"

log = logging.getLogger(__name__)


class Settings(BaseSettings):
    """Hub settings. ``environment`` is ``production`` (the default) or ``development``."""

    model_config = SettingsConfigDict(env_prefix="HEALTHMESH_", extra="ignore")

    environment: str = "production"
    secret_key: SecretStr | None = None
    database_url: str | None = None
    min_cell_count: int = 5
    # JSON {"client_id": {"secret": "...", "roles": ["researcher"]}} for the hub service's token endpoint.
    api_clients: SecretStr | None = None

    @property
    def is_development(self) -> bool:
        return self.environment == "development"

    def checked_environment(self) -> str:
        if self.environment not in ENVIRONMENTS:
            raise ConfigError(
                f"HEALTHMESH_ENVIRONMENT is {self.environment!r}; use production (default) or development"
            )
        return self.environment

    def checked_secret(self) -> str | None:
        """The configured secret (None when unset); a weak one is refused outside development."""
        self.checked_environment()
        if self.secret_key is None:
            return None
        value = self.secret_key.get_secret_value()
        if not value:
            raise ConfigError(
                "HEALTHMESH_SECRET_KEY is empty; unset it or set a random value (secrets.token_hex(32))"
            )
        try:
            return check_secret_strength(value)
        except ConfigError as error:
            if not self.is_development:
                raise
            log.warning("%s (accepted in development only)", error)
            return value


def write_private(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only, in one ``open`` (fails if it exists already)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def key_file_for(db_path: str | Path) -> Path:
    """Where a hub without a configured secret keeps its random master secret: beside its database."""
    return Path(db_path).resolve().parent / KEY_FILE_NAME


def _key_file_secret(db_path: str | Path) -> str:
    key_file = key_file_for(db_path)
    try:
        try:
            return check_secret_strength(key_file.read_text().strip(), f"the key file {key_file}")
        except FileNotFoundError:
            pass
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32)
        try:
            write_private(key_file, key + "\n")
        except FileExistsError:  # another process made it first: use theirs
            return key_file.read_text().strip()
    except OSError as error:
        raise ConfigError(
            f"cannot use the hub key file {key_file} ({error.strerror or error}); "
            "set HEALTHMESH_SECRET_KEY or give the hub's account access to that folder"
        ) from None
    log.info("created a random hub key in %s", key_file)
    return key


def hub_keys(settings: Settings, db_path: str | Path) -> HubKeys:
    """The hub's keys: from ``HEALTHMESH_SECRET_KEY``, else from the key file beside its database.

    A hub in PostgreSQL has no folder of its own to keep a key file in: it needs the secret.
    """
    from healthmesh.cdm.database import is_postgres_url

    configured = settings.checked_secret()
    if configured:
        return HubKeys(configured.encode())
    if is_postgres_url(db_path):
        raise ConfigError("a hub in PostgreSQL needs HEALTHMESH_SECRET_KEY (its master secret); set it")
    return HubKeys(_key_file_secret(db_path).encode())
