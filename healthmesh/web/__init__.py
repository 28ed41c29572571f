"""Page assets the hub serves itself (``static/``): Swagger UI's script and style, vendored from
swagger-ui-dist 5.35.0 (Apache-2.0, see ``static/swagger/LICENSE``), so the API pages need no CDN."""

from pathlib import Path

__all__ = ["STATIC_DIR"]

STATIC_DIR = Path(__file__).parent / "static"
