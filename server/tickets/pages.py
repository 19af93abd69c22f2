"""HTML of the viewer: the evidence page, the access-code page and the "link unusable" pages.

Rendered on the server from the layout in `server/viewer/`, every value escaped; no inline script
or style, so the Content-Security-Policy can forbid both. Pages for unusable links say which of
unknown, expired, revoked or exhausted applies, and nothing else (no ids, no stack traces).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, tzinfo
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import urlencode

from ..evidence.records import Evidence
from ..jobs.records import Derivative
from ..localtime import parse, show, time_html
from ..markup import escape as _e
from . import i18n, mediafacts
from .records import Ticket

_LAYOUT = Template(
    resources.files("avidence.server.viewer").joinpath("layout.html").read_text(encoding="utf-8")
)

# error code -> the message keys of its page
_PROBLEMS = {
    "ticket_unknown": "unknown",
    "ticket_expired": "expired",
    "ticket_revoked": "revoked",
    "ticket_exhausted": "exhausted",
    "too_many_requests": "busy",
}


def _text(lang: str, key: str) -> str:
    """A UI string in `lang`, HTML-escaped."""
    return _e(i18n.text(lang, key))


def size_text(size: int, lang: str) -> str:
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    short = f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
    return f"{short} ({size:,} {i18n.text(lang, 'bytes')})"


@dataclass(slots=True, frozen=True)
class Item:
    """One evidence card: the record, its player kind, the uploader's name, the media analysis."""

    record: Evidence
    kind: str  # "video", "audio" or "none"
    uploader: str
    analysis: dict[str, Any] | None = None  # `jobs.records.media_of`: probe and continuity
    custody: tuple[dict[str, Any], ...] = ()  # `cases.custody.of_evidence`
    copy: Derivative | None = None  # the transcoded copy the player gets, if any
    withheld: str | None = None  # "original" or "derivative:<id>" a scrub flagged
    poster: bool = False  # the worker made a poster frame (`GET .../poster/<id>`)


@dataclass(slots=True, frozen=True)
class ViewLimits:
    """What one view allows (settings `view_window`, `view_bytes_multiple`), told up front."""

    window: int  # seconds
    multiple: int


def layout(lang: str, title: str, body: str, *, path: str, embed: bool = False) -> str:
    other = "en" if lang == "zh" else "zh"
    return _LAYOUT.substitute(
        body_class="embed" if embed else "page",
        lang="zh-CN" if lang == "zh" else "en",
        title=_e(title),
        heading=_e(i18n.text(lang, "title")),
        switch_href=_e(f"{path}?{urlencode({'lang': other})}"),
        switch_lang=other,
        switch_label=_e(i18n.text(lang, "switch")),
        body=body,
    )


def _player(
    record: Evidence, kind: str, base: str, lang: str, withheld: str | None, *, has_poster: bool
) -> str:
    t = functools.partial(_text, lang)
    if withheld is not None:
        body = "withheld_original" if withheld == "original" else "withheld_copy"
        return (
            f'<div class="player withheld" role="alert"><p><b>{t("withheld_title")}</b> '
            f"{t(body)}</p></div>"
        )
    if kind == "none":
        return f'<div class="player none"><p>{t("no_player")}</p></div>'
    if kind == "video":
        poster = f' poster="{_e(base)}/poster/{_e(record.id)}"' if has_poster else ""
        element = f'<video preload="none" playsinline{poster}></video>'
    else:
        element = '<audio preload="none"></audio>'

    return (
        f'<div class="player {kind}" data-evidence="{_e(record.id)}" '
        f'data-media="{_e(base)}/media/{_e(record.id)}">{element}'
        f'<button type="button" class="start">&#9654; {t("play")}</button></div>'
        f'<p class="status" role="status"></p><p class="hint">{t("play_note")}</p>'
    )


def _card(item: Item, *, ticket: Ticket, base: str, lang: str, place: tzinfo) -> str:
    t = functools.partial(_text, lang)
    record, analysis = item.record, item.analysis or {}
    duration = mediafacts.duration(analysis.get("probe"), record.metadata)
    media = [
        (key, value)
        for key, value in (
            (
                "format",
                mediafacts.media_format(
                    analysis.get("probe"), lang=lang, filename=record.filename or ""
                ),
            ),
            ("continuity", mediafacts.continuity(analysis.get("continuity"), lang)),
        )
        if value
    ]
    facts = [
        ("case", _e(record.case_id)),
        ("item", _e(record.item or "-")),
        ("filename", _e(record.filename or "-")),
        (
            "duration",
            f'<span id="duration-{_e(record.id)}" data-known="{1 if duration else 0}">'
            f"{_e(duration or '-')}</span>",
        ),
        *media,
        ("size", _e(size_text(record.size, lang))),
        ("blake3", f'<span class="hash">{_e(record.blake3)}</span>'),
        ("sha256", f'<span class="hash">{_e(record.sha256 or "-")}</span>'),
        ("uploader", _e(item.uploader)),
        ("received", time_html(record.received_at, lang=lang, place=place)),
    ]
    if item.kind != "none" and item.withheld is None:
        facts.append(("playback", t("plays_copy" if item.copy else "plays_original")))
    rows = _rows(facts, lang)
    actions = f'<a href="{_e(base)}/receipt/{_e(record.id)}">{t("receipt")}</a>'
    if ticket.can_download and item.withheld != "original":
        actions += (
            f'<a class="download" href="{_e(base)}/download/{_e(record.id)}" download>'
            f"{t('download')}</a>"
        )
    title = record.filename or record.id
    return (
        f'<section class="evidence" id="{_e(record.id)}"><h2>{_e(title)}</h2>'
        f"{_player(record, item.kind, base, lang, item.withheld, has_poster=item.poster)}"
        f'<dl class="facts">{rows}</dl>{_provenance(item, lang, place)}'
        f"{_custody(item, lang, place)}"
        f'<div class="actions">{actions}</div></section>'
    )


_LABELS = {"blake3": "BLAKE3", "sha256": "SHA-256"}


def _rows(facts: list[tuple[str, str]], lang: str) -> str:
    return "".join(
        f"<dt>{_e(_LABELS[key]) if key in _LABELS else _text(lang, key)}</dt><dd>{value}</dd>"
        for key, value in facts
    )


def _provenance(item: Item, lang: str, place: tzinfo) -> str:
    """The transcoded copy the player gets: its own digests, and how and from what it was made,
    beside the original's digests above, so a viewer can tell what was watched."""
    copy = item.copy
    if copy is None or item.withheld is not None:
        return ""
    source_matches = copy.source_blake3 == item.record.blake3
    source = f'<span class="hash">{_e(copy.source_blake3)}</span>'
    if not source_matches:
        source += f' <b class="bad">{_text(lang, "copy_source_differs")}</b>'
    facts = [
        ("copy_profile", _e(f"{copy.profile} ({copy.content_type})")),
        ("size", _e(size_text(copy.size, lang))),
        ("blake3", f'<span class="hash">{_e(copy.blake3)}</span>'),
        ("sha256", f'<span class="hash">{_e(copy.sha256)}</span>'),
        ("copy_source", source),
        ("copy_tool", _e(copy.ffmpeg_version)),
        ("copy_command", f"<code>{_e(copy.to_json()['command_line'])}</code>"),
        ("copy_made", time_html(copy.created_at, lang=lang, place=place)),
    ]
    return (
        f'<div class="provenance"><h3>{_text(lang, "copy_title")}</h3>'
        f"<p>{_text(lang, 'copy_note')}</p>"
        f'<dl class="facts copy">{_rows(facts, lang)}</dl></div>'
    )


def _custody(item: Item, lang: str, place: tzinfo) -> str:
    """The item's chain of custody: received, hashed, checked, handed on between agencies."""
    if not item.custody:
        return ""
    lines = []
    for entry in item.custody:
        words = i18n.text(
            lang,
            f"custody_{entry['step']}",
            sender=entry.get("from") or "-",
            receiver=entry.get("to") or "-",
        )
        moment = parse(str(entry.get("time", "")))
        stamp = time_html(moment, lang=lang, place=place) if moment else ""
        lines.append(f"<li>{stamp} {_e(words)}</li>")
    return (
        f'<details class="custody"><summary>{_text(lang, "custody")}</summary>'
        f"<ol>{''.join(lines)}</ol></details>"
    )


def viewer(
    ticket: Ticket,
    items: list[Item],
    *,
    token: str,
    lang: str,
    place: tzinfo,
    embed: bool = False,
    limits: ViewLimits | None = None,
) -> str:
    """The page: notice, ticket facts, and one card per evidence item; times in `place`."""
    t = functools.partial(_text, lang)
    base = f"/t/{token}"
    left = ticket.views_left
    colon = t("colon")  # "：" in Chinese, ": " in English
    facts = (
        f'<p class="ticket"><span>{t("recipient")}{colon}<b>{_e(ticket.recipient)}</b></span>'
        f"<span>{t('expires')}{colon}"
        f"<b>{time_html(ticket.expires_at, lang=lang, place=place)}</b></span>"
        f'<span>{t("views_left")}{colon}<b id="views-left">'
        f"{_e(left) if left is not None else t('unlimited')}</b></span></p>"
    )
    index = ""
    if len(items) > 1:
        links = "".join(
            f'<li><a href="#{_e(i.record.id)}">{_e(i.record.filename or i.record.id)}</a></li>'
            for i in items
        )
        index = f'<nav class="items"><b>{t("items")}</b><ol>{links}</ol></nav>'
    cards = "".join(_card(item, ticket=ticket, base=base, lang=lang, place=place) for item in items)
    exhausted = f"{i18n.text(lang, 'exhausted_title')}. {i18n.text(lang, 'exhausted_body')}"
    withheld = f"{i18n.text(lang, 'withheld_title')} {i18n.text(lang, 'withheld_now')}"
    allows = ""
    if limits is not None:
        hours, minutes = divmod(limits.window // 60, 60)
        span = i18n.text(lang, "minutes_n", n=limits.window // 60)
        if not minutes:
            span = i18n.text(lang, "hours_n", n=hours)
        words = i18n.text(lang, "view_allows", duration=span, multiple=limits.multiple)
        allows = f'<p class="allows">{_e(words)}</p>'
    messages = " ".join(
        f'data-msg-{name}="{t(key)}"'
        for name, key in (
            ("unplayable", "unplayable"),
            ("network", "network"),
            ("revoked", "stopped_revoked"),
            ("expired", "stopped_expired"),
            ("deleted", "stopped_deleted"),
            ("own-clock", "your_clock"),
            ("spent", "view_spent"),
            ("view-expired", "view_expired"),
        )
    )
    main = (
        f'<main data-views="{_e(base)}/views" {messages} data-msg-exhausted="{_e(exhausted)}" '
        f'data-msg-withheld="{_e(withheld)}">'
        f'<p class="notice" role="note">{t("notice")}</p>{facts}{allows}{index}{cards}</main>'
    )
    return layout(lang, i18n.text(lang, "title"), main, path=base, embed=embed)


def code_form(
    *,
    token: str,
    lang: str,
    place: tzinfo,
    tries_left: int | None = None,
    locked_until: datetime | None = None,
) -> str:
    t = functools.partial(_text, lang)
    status = ""
    if locked_until is not None:
        until = show(locked_until, lang=lang, place=place)
        status = _e(i18n.text(lang, "code_locked", time=until))
    elif tries_left is not None:
        status = _e(i18n.text(lang, "code_wrong", n=tries_left))
    body = (
        f'<main class="message"><h1>{t("code_title")}</h1><p>{t("code_prompt")}</p>'
        f'<form method="post" action="/t/{_e(token)}/code">'
        f'<label for="code" class="visually-hidden">{t("code_label")}</label>'
        '<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" '
        'pattern="[0-9]{6}" maxlength="6" required autofocus>'
        f'<button type="submit">{t("code_submit")}</button></form>'
        f'<p class="status" role="alert">{status}</p>'
        f'<p class="notice" role="note">{t("notice")}</p></main>'
    )
    return layout(lang, i18n.text(lang, "code_title"), body, path=f"/t/{token}")


def problem(code: str, *, lang: str, path: str) -> str:
    """The page for an unusable link (or any other failure: a generic one)."""
    key = _PROBLEMS.get(code, "error")
    title = i18n.text(lang, f"{key}_title")
    body = (
        f'<main class="message"><h1>{_e(title)}</h1>'
        f"<p>{_e(i18n.text(lang, f'{key}_body'))}</p></main>"
    )
    return layout(lang, title, body, path=path)
