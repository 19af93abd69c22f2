"""The viewer's words in Chinese and English, and which one a request gets.

Order of choice: `?lang=` (the switch link, remembered in a cookie), the cookie, then the
browser's Accept-Language by q-value; Chinese when nothing says otherwise, as most recipients
are Chinese courts and procuratorates.
"""

from __future__ import annotations

import json
from importlib import resources

from aiohttp import web

LANGS = ("zh", "en")
DEFAULT = "zh"
COOKIE = "avd_lang"

# The words, per language, with `{name}` placeholders; kept as data beside the page's assets.
MESSAGES: dict[str, dict[str, str]] = json.loads(
    resources.files("avidence.server.viewer").joinpath("messages.json").read_text(encoding="utf-8")
)


def _accept_language(header: str) -> str | None:
    """The first of our languages by the header's q-values (RFC 9110 12.5.4)."""
    best: tuple[float, int, str] | None = None
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGS and quality > 0:
            candidate = (-quality, position, primary)
            if best is None or candidate < best:
                best = candidate
    return best[2] if best else None


def pick(request: web.BaseRequest) -> str:
    for chosen in (request.query.get("lang"), request.cookies.get(COOKIE)):
        if chosen in LANGS:
            return chosen
    return _accept_language(request.headers.get("Accept-Language", "")) or DEFAULT


def text(
    lang: str, key: str, *, table: dict[str, dict[str, str]] = MESSAGES, **values: object
) -> str:
    """The word `key` in `lang` from `table` (the viewer's, or another page's of the same shape)."""
    words = table.get(lang, table[DEFAULT])
    return words[key].format(**values) if values else words[key]


def remember(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Keep a `?lang=` choice in a cookie, so the next page comes in the same language."""
    chosen = request.query.get("lang")
    if chosen in LANGS:
        response.set_cookie(COOKIE, chosen, path="/", max_age=365 * 86400, samesite="Lax")
