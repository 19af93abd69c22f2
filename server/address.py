"""Where people reach this server, for links printed by admin commands.

A link printed by `avidence-server ticket create` must open the server that holds the
evidence. The command reads the same settings the server reads (config file, `AVIDENCE_*`), so
`public_url` is the answer when it is set. When it is not, the command cannot know a port the
server was given on its command line (`serve --port 18777`), so `serve` records the address it
listens on in the data folder, and commands use that one and say that `public_url` is missing:
such a link works on this machine, rarely for a recipient elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import Settings

FILE_NAME = "server-address.json"


@dataclass(slots=True, frozen=True)
class BaseUrl:
    """The base of printed links, and a note for the operator when it is only a guess."""

    url: str
    note: str | None = None


def _path(settings: Settings) -> Path:
    return settings.data_dir / FILE_NAME


def remember(settings: Settings) -> None:
    """Called by `serve` once it listens: the address commands fall back on."""
    path = _path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"url": settings.base_url}) + "\n", encoding="utf-8")


def _remembered(settings: Settings) -> str | None:
    try:
        found = json.loads(_path(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    url = found.get("url") if isinstance(found, dict) else None
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None


def for_links(settings: Settings) -> BaseUrl:
    """`public_url` when configured; else where the server last listened, with a note."""
    if settings.public_url:
        return BaseUrl(settings.public_url.rstrip("/"))
    listened = _remembered(settings)
    if listened is not None:
        return BaseUrl(
            listened,
            f"public_url is not configured: this link uses the address the server listens on "
            f"({listened}); set public_url (config file or AVIDENCE_PUBLIC_URL) to the address "
            "recipients use",
        )
    return BaseUrl(
        settings.base_url,
        f"public_url is not configured and no server has listened with data folder "
        f"{settings.data_dir}: this link assumes {settings.base_url}; set public_url "
        "(config file or AVIDENCE_PUBLIC_URL) to the address recipients use",
    )
