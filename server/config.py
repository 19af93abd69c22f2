"""Server settings from a TOML file, `AVIDENCE_*` environment variables and command-line flags.

Later sources win: defaults < file < environment < flags. Every setting is documented in
`docs/configuration.md` (a test fails when one is not) and validated here, so a bad value stops
the server at start-up with one line naming the setting, never with a traceback.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any

from avidence.client.signatures import ED25519, SM2_SM3
from avidence.storage.digests import normalize
from avidence.storage.s3body import PART_CHECKSUMS

from .localtime import UnknownZone, zone
from .proxies import parse_networks
from .webhooks.targets import parse_allow

STORAGE_KINDS = ("local", "s3")
KEY_PROVIDERS = ("file", "pkcs11")
ENCRYPTION_MODES = ("auto", "on", "off")
ENCRYPTION_SUITES = ("international", "gm")
SUITES = ENCRYPTION_SUITES
# What each suite signs with; `gm` also computes SM3 and seals with SM4-GCM (GB/T 39786).
SIGNATURE_ALGORITHMS = {"international": ED25519, "gm": SM2_SM3}
ENV_PREFIX = "AVIDENCE_"
DEFAULT_DATA_DIR = Path("data")  # relative: the folder the command runs in


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line meant for the operator."""


@dataclass(slots=True, frozen=True)
class Settings:
    """Everything `avidence-server` needs to run; see docs/configuration.md."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = DEFAULT_DATA_DIR
    database: str = ""
    storage: str = "local"
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_region: str = ""
    s3_prefix: str = ""
    s3_part_size: int = 16 * 1024 * 1024
    s3_part_checksum: str = "auto"
    max_size: int = 200 * 1024**3
    digests: tuple[str, ...] = ("blake3", "sha256")
    tus_path: str = "/files/"
    public_url: str = ""
    display_timezone: str = ""
    cors_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    upload_expiry: int = 7 * 24 * 3600
    read_timeout: int = 60
    view_idle: int = 60
    view_window: int = 6 * 3600
    view_bytes_multiple: int = 3
    shutdown_grace: int = 30
    max_headers: int = 64
    max_header_size: int = 8190
    tls_cert: str = ""
    tls_key: str = ""
    signing_key: str = ""
    key_provider: str = "file"
    pkcs11_module: str = "/usr/lib/softhsm/libsofthsm2.so"
    pkcs11_token: str = ""
    pkcs11_key: str = "avidence-signing"
    pkcs11_pin_file: str = ""
    pkcs11_kek: str = "avidence-kek"
    trusted_keys: str = ""
    suite: str = "international"
    encryption: str = "auto"
    encryption_suite: str = ""  # empty: the one `suite` names (resolved in __post_init__)
    kek_dir: str = ""
    scrub_interval: int = 3600
    scrub_age_days: int = 30
    object_lock_mode: str = ""
    object_lock_days: int = 0
    log_level: str = "INFO"
    log_format: str = "text"
    embedded_worker: bool = True
    worker_concurrency: int = 1
    job_lease: int = 60
    job_attempts: int = 3
    job_backoff: int = 30
    transcode_profiles: tuple[str, ...] = ("mp4-h264", "poster")
    webhook_attempts: int = 8
    webhook_backoff: int = 10
    webhook_timeout: int = 10
    webhook_allow: tuple[str, ...] = ()
    retention_default_class: str = ""
    retention_grace_days: int = 0
    purge_recovery_days: int = 30
    forever_lock_days: int = 365
    quota_uploader_bytes: int = 0
    quota_site_bytes: int = 0
    audit_witnesses: tuple[str, ...] = ()
    witness_lock_days: int = 3650
    checkpoint_interval: int = 300
    tsa_url: str = ""
    tsa_certificates: str = ""
    tsa_timeout: int = 10
    upload_create_per_minute: int = 600
    max_open_uploads: int = 1000
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The suite picks the sealing suite unless one is set, and `gm` always computes SM3:
        # a GB/T 39786 deployment states SM3 digests in every receipt.
        if not self.encryption_suite:
            object.__setattr__(self, "encryption_suite", self.suite)
        if self.suite == "gm" and "sm3" not in self.digests:
            object.__setattr__(self, "digests", (*self.digests, "sm3"))

    @property
    def signature_algorithm(self) -> str:
        """`ed25519` or `sm2-sm3`: what this deployment's new keys sign with."""
        return SIGNATURE_ALGORITHMS.get(self.suite, ED25519)

    @property
    def database_url(self) -> str:
        """SQLAlchemy async URL; the default is a SQLite file in the data dir."""
        return normalize_database_url(self.database or f"sqlite:///{self.data_dir / 'catalog.db'}")

    @property
    def base_url(self) -> str:
        """Where people reach this server: `public_url`, else the address it listens on."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{host}:{self.port}"

    @property
    def display_zone(self) -> tzinfo:
        """The zone pages show times in: `display_timezone`, else the server's own."""
        return zone(self.display_timezone)

    @property
    def store_root(self) -> Path:
        return self.data_dir / "store"


# Retention and quota numbers: all zero or positive (quotas: 0 means no limit).
_RETENTION_INTS = (
    "retention_grace_days",
    "purge_recovery_days",
    "forever_lock_days",
    "quota_uploader_bytes",
    "quota_site_bytes",
)
_INT_FIELDS = {
    "port",
    "s3_part_size",
    "max_size",
    "upload_expiry",
    "read_timeout",
    "view_idle",
    "view_window",
    "view_bytes_multiple",
    "shutdown_grace",
    "max_headers",
    "max_header_size",
    "object_lock_days",
    "scrub_interval",
    "scrub_age_days",
    "worker_concurrency",
    "job_lease",
    "job_attempts",
    "job_backoff",
    "webhook_attempts",
    "webhook_backoff",
    "webhook_timeout",
    "witness_lock_days",
    "checkpoint_interval",
    "tsa_timeout",
    "upload_create_per_minute",
    "max_open_uploads",
    *_RETENTION_INTS,
}
_TUPLE_FIELDS = {
    "digests",
    "cors_origins",
    "transcode_profiles",
    "trusted_proxies",
    "audit_witnesses",
    "webhook_allow",
}
_BOOL_FIELDS = {"embedded_worker"}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_FIELDS = {f.name for f in dataclasses.fields(Settings)} - {"extra"}


def normalize_database_url(url: str) -> str:
    """Accept the usual spellings and return the async-driver URL SQLAlchemy needs."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    if url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite:///")):
        return url
    raise ConfigError(
        f"database: unsupported URL {redact(url)!r}; use sqlite:///PATH or postgresql://HOST/DB"
    )


def redact(url: str) -> str:
    """Hide a password in a URL before it reaches a log or an error message."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


def _coerce(name: str, value: Any) -> Any:
    if name in _INT_FIELDS:
        try:
            number = int(str(value).replace("_", ""))
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
        return number
    if name in _BOOL_FIELDS:
        text = str(value).strip().lower()
        if isinstance(value, bool) or text in _TRUE + _FALSE:
            return value if isinstance(value, bool) else text in _TRUE
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    if name in _TUPLE_FIELDS:
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(str(i).strip() for i in items if str(i).strip())
    if name == "data_dir":
        return Path(str(value)).expanduser()
    return str(value)


def load(
    *, config_file: Path | None = None, env: Mapping[str, str] | None = None, **flags: Any
) -> Settings:
    """Merge file, environment and flags (None flags are ignored) and validate the result."""
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if config_file is not None:
        try:
            document = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config: file {config_file} not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config: {config_file} is not valid TOML: {exc}") from None
        for key, value in document.items():
            name = key.replace("-", "_")
            if name in _FIELDS:
                values[name] = value
            elif isinstance(value, dict):
                extra[name] = value  # sections for later features (retention, kinds, ...)
            else:
                raise ConfigError(f"config: unknown setting {key!r} in {config_file}")
    environment = os.environ if env is None else env
    for name in _FIELDS:
        raw = environment.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = raw
    for name, value in flags.items():
        if name not in _FIELDS:
            raise ConfigError(f"unknown setting {name!r}")
        if value is not None:
            values[name] = value
    coerced = {name: _coerce(name, value) for name, value in values.items()}
    settings = Settings(**coerced, extra=extra)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Raise ConfigError naming the first setting that cannot work."""
    if settings.storage not in STORAGE_KINDS:
        raise ConfigError(
            f"storage: unknown kind {settings.storage!r}; choose one of {', '.join(STORAGE_KINDS)}"
        )
    if settings.storage == "s3" and not settings.s3_bucket:
        raise ConfigError("s3_bucket: required when storage is s3 (--s3-bucket NAME)")
    if settings.key_provider not in KEY_PROVIDERS:
        raise ConfigError(
            f"key_provider: choose {' or '.join(KEY_PROVIDERS)}, not {settings.key_provider!r}"
        )
    if settings.key_provider == "pkcs11" and not (settings.pkcs11_token and settings.pkcs11_key):
        raise ConfigError("pkcs11_token/pkcs11_key: name the token and key for key_provider=pkcs11")
    if settings.encryption not in ENCRYPTION_MODES:
        raise ConfigError(f"encryption: choose {', '.join(ENCRYPTION_MODES)}")
    if settings.suite not in SUITES:
        raise ConfigError(f"suite: choose {' or '.join(SUITES)}, not {settings.suite!r}")
    if settings.suite == "gm" and settings.key_provider == "pkcs11":
        raise ConfigError(
            "suite: gm signs with SM2, which key_provider = pkcs11 cannot (SoftHSM2 has no SM2 "
            "mechanism); use key_provider = file"
        )
    if settings.encryption_suite not in ENCRYPTION_SUITES:
        raise ConfigError(f"encryption_suite: choose {' or '.join(ENCRYPTION_SUITES)}")
    if not 0 < settings.port < 65536:
        raise ConfigError(f"port: {settings.port} is not a TCP port")
    if settings.max_size <= 0:
        raise ConfigError("max_size: must be a positive number of bytes")
    if settings.s3_part_size < 5 * 1024 * 1024:
        raise ConfigError("s3_part_size: S3 needs parts of at least 5 MiB (5242880 bytes)")
    if settings.s3_part_checksum not in PART_CHECKSUMS:
        raise ConfigError(
            f"s3_part_checksum: choose {' or '.join(PART_CHECKSUMS)}, "
            f"not {settings.s3_part_checksum!r}"
        )
    if settings.object_lock_mode.upper() not in ("", "GOVERNANCE", "COMPLIANCE"):
        raise ConfigError("object_lock_mode: choose governance or compliance (or leave empty)")
    if settings.object_lock_days < 0:
        raise ConfigError("object_lock_days: must be zero or a positive number of days")
    if settings.checkpoint_interval < 1 or settings.witness_lock_days < 1:
        raise ConfigError("checkpoint_interval/witness_lock_days: must be positive")
    if settings.tsa_url and not settings.tsa_url.startswith(("http://", "https://")):
        raise ConfigError(f"tsa_url: {settings.tsa_url!r} is not an http(s) URL")
    if settings.tsa_url and not settings.tsa_certificates:
        raise ConfigError(
            "tsa_certificates: pin the TSA's certificate and its CA (a PEM file) with tsa_url"
        )
    if settings.tsa_timeout < 1:
        raise ConfigError("tsa_timeout: must be a positive number of seconds")
    if settings.scrub_interval < 0 or settings.scrub_age_days < 0:
        raise ConfigError("scrub_interval/scrub_age_days: must be zero or positive")
    if settings.read_timeout <= 0:
        raise ConfigError("read_timeout: must be a positive number of seconds")
    if settings.view_idle <= 0:
        raise ConfigError("view_idle: must be a positive number of seconds")
    if not 60 <= settings.view_window <= 7 * 86400:
        raise ConfigError("view_window: between 60 seconds and 7 days (604800)")
    if not 1 <= settings.view_bytes_multiple <= 100:
        raise ConfigError("view_bytes_multiple: between 1 and 100 times the file's size")
    if settings.shutdown_grace < 0:
        raise ConfigError("shutdown_grace: zero or a positive number of seconds")
    if not 8 <= settings.max_headers <= 1000:
        raise ConfigError("max_headers: between 8 and 1000 header lines")
    if not 1024 <= settings.max_header_size <= 65536:
        raise ConfigError("max_header_size: between 1024 and 65536 bytes")
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ConfigError("tls_cert/tls_key: give both (--tls-cert FILE --tls-key FILE) or neither")
    if settings.upload_expiry <= 0:
        raise ConfigError("upload_expiry: must be a positive number of seconds")
    if not (settings.tus_path.startswith("/") and settings.tus_path.endswith("/")):
        raise ConfigError(f"tus_path: {settings.tus_path!r} must start and end with '/'")
    if settings.log_format not in ("text", "json"):
        raise ConfigError("log_format: choose text or json")
    if settings.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("log_level: choose DEBUG, INFO, WARNING or ERROR")
    if settings.worker_concurrency < 1:
        raise ConfigError("worker_concurrency: at least 1 job at a time")
    if settings.job_lease < 1:
        raise ConfigError("job_lease: must be a positive number of seconds")
    if settings.job_attempts < 1:
        raise ConfigError("job_attempts: at least 1")
    if settings.job_backoff < 0:
        raise ConfigError("job_backoff: zero or a positive number of seconds")
    if settings.webhook_attempts < 1 or settings.webhook_backoff < 0:
        raise ConfigError("webhook_attempts/webhook_backoff: at least 1 attempt, backoff >= 0")
    if settings.webhook_timeout < 1:
        raise ConfigError("webhook_timeout: a positive number of seconds")
    if settings.upload_create_per_minute < 0 or settings.max_open_uploads < 0:
        raise ConfigError("upload_create_per_minute/max_open_uploads: zero (no limit) or positive")
    for name in _RETENTION_INTS:
        if getattr(settings, name) < 0:
            raise ConfigError(f"{name}: must be zero or positive")
    try:
        zone(settings.display_timezone)
    except UnknownZone as exc:
        raise ConfigError(str(exc)) from None
    try:
        parse_allow(settings.webhook_allow)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        parse_networks(settings.trusted_proxies)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        normalize(settings.digests)
    except ValueError as exc:
        raise ConfigError(f"digests: {exc}") from None
    normalize_database_url(settings.database_url)
