"""HTML of the upload page: the form in the visitor's language, every value escaped.

The words the script needs (progress, errors) travel in a JSON data block, which the
Content-Security-Policy allows because it never runs.
"""

from __future__ import annotations

import json
from datetime import tzinfo
from importlib import resources
from string import Template
from urllib.parse import urlencode

from aiohttp import web

from ..localtime import place_name, zone_name
from ..markup import escape as _e
from ..state import SETTINGS
from ..tickets import i18n

_PACKAGE = resources.files("avidence.server.uploadpage")
_LAYOUT = Template(_PACKAGE.joinpath("upload.html").read_text(encoding="utf-8"))
MESSAGES: dict[str, dict[str, str]] = json.loads(
    _PACKAGE.joinpath("messages.json").read_text(encoding="utf-8")
)

# Words shown by the server-side template; every other key is for the script.
_FORM_KEYS = (
    "intro",
    "token_label",
    "token_hint",
    "forget",
    "case_label",
    "item_label",
    "drop",
    "choose",
    "start",
    "digest_note",
)


def script_words(lang: str) -> str:
    """The script's words as JSON that cannot close its <script> element."""
    words = {k: v for k, v in MESSAGES[lang].items() if k not in _FORM_KEYS}
    return json.dumps(words, ensure_ascii=False).replace("<", "\\u003c")


def render(lang: str, *, endpoint: str, place: tzinfo) -> str:
    """The page; times the script shows (when an upload was received) are in `place`."""
    other = "en" if lang == "zh" else "zh"

    def t(key: str) -> str:
        return _e(i18n.text(lang, key, table=MESSAGES))

    return _LAYOUT.substitute(
        lang="zh-CN" if lang == "zh" else "en",
        title=t("title"),
        switch_href=_e("/upload?" + urlencode({"lang": other})),
        switch_lang=other,
        switch_label=t("switch"),
        endpoint=_e(endpoint),
        zone=_e(zone_name(place)),
        zone_name=_e(place_name(place, lang=lang)),
        words=script_words(lang),
        **{key: t(key) for key in _FORM_KEYS},
    )


async def handle(request: web.Request) -> web.Response:
    """GET /upload: the page; `?lang=zh|en` switches and is remembered in a cookie."""
    lang = i18n.pick(request)
    settings = request.app[SETTINGS]
    body = render(lang, endpoint=settings.tus_path, place=settings.display_zone)
    response = web.Response(text=body, content_type="text/html", charset="utf-8")
    i18n.remember(request, response)
    return response
