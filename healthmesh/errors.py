"""One exception tree for healthmesh.

```
HealthmeshError                 base of every error we raise on purpose
 +-- ConfigError                bad or missing settings (a placeholder secret outside development)
 +-- CDMError                   the hub database cannot be opened, created or read
 +-- VocabularyError            vocabulary files missing or malformed
 +-- IngestError                an input that cannot be read at all (not a bad record: those are reported)
 +-- PrivacyError               an output that would break disclosure rules
 +-- QualityError               a data-quality run that cannot proceed
 +-- CohortError                a cohort definition that does not compile
 +-- ModelError                 a model that cannot be fitted, loaded or trusted
 +-- ForecastError              malformed series or impossible forecast settings
 +-- FederationError            the network cannot be started or a message breaks the rules
 +-- AuthError                  missing or insufficient credentials
```
Messages say what was wrong, the value received, and the fix. The CLI maps each class to an exit
code (``EXIT_CODES``); the API maps them to HTTP statuses in one handler.
"""

from __future__ import annotations

__all__ = [
    "EXIT_CODES",
    "AuthError",
    "CDMError",
    "CohortError",
    "ConfigError",
    "FederationError",
    "ForecastError",
    "HealthmeshError",
    "IngestError",
    "ModelError",
    "PrivacyError",
    "QualityError",
    "VocabularyError",
]


class HealthmeshError(Exception):
    """Base of every error healthmesh raises on purpose."""


class ConfigError(HealthmeshError):
    """Bad or missing settings."""


class CDMError(HealthmeshError):
    """The hub database cannot be opened, created or read."""


class VocabularyError(HealthmeshError):
    """Vocabulary files are missing or malformed."""


class IngestError(HealthmeshError):
    """An input that cannot be read at all."""


class PrivacyError(HealthmeshError):
    """An output would break the hub's disclosure rules."""


class QualityError(HealthmeshError):
    """A data-quality run cannot proceed."""


class CohortError(HealthmeshError):
    """A cohort definition does not compile or cannot run."""


class ModelError(HealthmeshError):
    """A model cannot be fitted, loaded or trusted."""


class ForecastError(HealthmeshError):
    """Malformed series or impossible forecast settings."""


class FederationError(HealthmeshError):
    """The network cannot start, or a message breaks the rules."""


class AuthError(HealthmeshError):
    """Missing or insufficient credentials."""


# CLI exit codes: 0 success, 1 records rejected (ingest), 2 usage errors (Typer's own), then one per class.
EXIT_CODES: dict[type[HealthmeshError], int] = {
    ConfigError: 3,
    CDMError: 4,
    VocabularyError: 5,
    IngestError: 6,
    PrivacyError: 7,
    QualityError: 8,
    CohortError: 9,
    ModelError: 10,
    ForecastError: 11,
    FederationError: 12,
    AuthError: 13,
}
