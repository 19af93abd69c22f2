"""The avidence server: `pip install 'avidence[server]'`.

`pip install avidence` alone is the client (upload, watch, verify); it carries these files but
not the server's dependencies, so importing the server there says which install is missing
instead of failing on the first absent module somewhere inside.
"""

from importlib.util import find_spec

# One module per dependency of the `server` extra (pyproject.toml).
_SERVER_MODULES = (
    "sqlalchemy",
    "alembic",
    "aiosqlite",
    "asyncpg",
    "boto3",
    "ffmpeg",
    "prometheus_client",
    "jsonschema",
    "pkcs11",
    "confusable_homoglyphs",
)

_missing = [name for name in _SERVER_MODULES if find_spec(name) is None]
if _missing:
    raise ImportError(
        f"the avidence server needs its dependencies (missing: {', '.join(_missing)}): "
        "pip install 'avidence[server]'"
    )
