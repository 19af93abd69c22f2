"""Settings from flags, environment and a TOML file, so a recorder PC needs no flags at all.

Precedence: command-line flag, then environment (`AVIDENCE_SERVER`, `AVIDENCE_TOKEN`,
`AVIDENCE_STATE_DIR`), then the config file (`--config`, `AVIDENCE_CONFIG`, or `config.toml` in
the platformdirs user config dir), then the built-in default. Example file:

    server = "https://evidence.example.org"
    token = "avd_..."
    case = "2026-0001"          # default case for `upload`
    parallel = 4
    chunk_size = "64MiB"
    state_dir = "/var/lib/avidence-client"
    settle = 30                 # watch: seconds a file must stay unchanged
    trusted_keys = "/etc/avidence/server-keys.json"   # pin receipt keys instead of GET /api/keys
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import platformdirs

from .errors import InputError

ENV = {"server": "AVIDENCE_SERVER", "token": "AVIDENCE_TOKEN", "state_dir": "AVIDENCE_STATE_DIR"}
KEYS = {
    "server",
    "token",
    "case",
    "item",
    "parallel",
    "chunk_size",
    "state_dir",
    "settle",
    "retries",
    "trusted_keys",
}
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(i?B?)?\s*$", re.IGNORECASE)


def default_config_path() -> Path:
    env = os.environ.get("AVIDENCE_CONFIG")
    return Path(env) if env else Path(platformdirs.user_config_dir("avidence")) / "config.toml"


def load_file(path: Path | None) -> dict[str, Any]:
    """The TOML settings; a missing default file is empty, a missing named file an error."""
    explicit = path is not None
    path = path or default_config_path()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        if explicit:
            raise InputError(f"config file {path} not found") from None
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"config file {path}: {exc}") from None
    unknown = set(data) - KEYS
    if unknown:
        raise InputError(f"config file {path}: unknown setting(s) {', '.join(sorted(unknown))}")
    return data


@dataclass(slots=True, frozen=True)
class Settings:
    file: Mapping[str, Any]
    env: Mapping[str, str]

    @classmethod
    def load(cls, config: Path | None, env: Mapping[str, str] | None = None) -> Settings:
        return cls(load_file(config), dict(os.environ if env is None else env))

    def get(self, key: str, flag: Any, default: Any = None) -> Any:
        if flag is not None:
            return flag
        if key in ENV and self.env.get(ENV[key]):
            return self.env[ENV[key]]
        if key in self.file:
            return self.file[key]
        return default


def parse_size(value: int | str) -> int:
    """`67108864`, `64M`, `64MiB`, `1G`: binary units, as disks and chunk sizes are."""
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(value)
        if not match:
            raise InputError(f"{value!r} is not a size (examples: 1048576, 8MiB, 64M)")
        size = int(match.group(1)) * 1024 ** " KMGT".index(match.group(2).upper() or " ")
    if size <= 0:
        raise InputError("sizes must be positive")
    return size


def endpoints(server: str) -> tuple[str, str]:
    """(tus endpoint, API base) from a server URL.

    `http://host:8080` means avidence's `/files/` endpoint; a URL with a path is taken as the
    tus endpoint itself (any tus server), and the API is looked for beside its `files/`."""
    parts = urlsplit(server.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"--server {server!r} must be an http:// or https:// URL")
    path = parts.path or "/"
    if path == "/":
        path = "/files/"
    if not path.endswith("/"):
        path += "/"
    api_path = path[: -len("files/")] if path.endswith("/files/") else "/"
    endpoint = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    return endpoint, urlunsplit((parts.scheme, parts.netloc, api_path, "", ""))
