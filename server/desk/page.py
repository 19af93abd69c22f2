"""HTML of the desk: one page in the visitor's language; the scripts draw the rest.

Every word the scripts show travels in a JSON data block, which the Content-Security-Policy
allows because it never runs.
"""

from __future__ import annotations

import json
from importlib import resources
from string import Template
from urllib.parse import urlencode

from aiohttp import web

from ..markup import escape as _e
from ..tickets import i18n

_PACKAGE = resources.files("avidence.server.desk")
_LAYOUT = Template(_PACKAGE.joinpath("desk.html").read_text(encoding="utf-8"))
MESSAGES: dict[str, dict[str, str]] = json.loads(
    _PACKAGE.joinpath("messages.json").read_text(encoding="utf-8")
)

# Words in the page itself (the sign-in form works before any script has run).
_PAGE_KEYS = ("title", "switch", "token_label", "token_hint", "sign_in", "intro", "skip")


def script_words(lang: str) -> str:
    """Every word as JSON that cannot close its <script> element."""
    return json.dumps(MESSAGES[lang], ensure_ascii=False).replace("<", "\\u003c")


def render(lang: str) -> str:
    other = "en" if lang == "zh" else "zh"

    def t(key: str) -> str:
        return _e(i18n.text(lang, key, table=MESSAGES))

    return _LAYOUT.substitute(
        lang="zh-CN" if lang == "zh" else "en",
        short_lang=lang,
        switch_href=_e("/desk?" + urlencode({"lang": other})),
        switch_lang=other,
        words=script_words(lang),
        **{key: t(key) for key in _PAGE_KEYS},
    )


async def handle(request: web.Request) -> web.Response:
    """GET /desk: the page; `?lang=zh|en` switches and is remembered in a cookie."""
    lang = i18n.pick(request)
    response = web.Response(text=render(lang), content_type="text/html", charset="utf-8")
    i18n.remember(request, response)
    return response
