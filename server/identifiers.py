"""Case and item identifiers that read the same to every person and every program.

A case id is how a judge, a clerk and a case system find evidence. Two ids that look alike but
differ in bytes (`C-1` with a Latin C or a Cyrillic Es, U+0421; with a fullwidth C, U+FF23; a
right-to-left override turning `1-C` around on screen; an invisible filler) would split one case
in two, or let an uploader slip evidence into a list where nobody looks for it. Ids are also
used as folder names by case systems, so path tricks are refused too.

Chinese court numbers such as `(2024)京0105刑初123号`, usually written with fullwidth
parentheses, stay valid: CJK characters and fullwidth punctuation are fine; what is refused is a
letter or digit that has a plainer twin.

Mixed alphabets are refused outright; an id written wholly in one look-alike alphabet is
refused when it is a whole-script confusable (Unicode TR39) of a plain ASCII id: `CASE-7` written
in Cyrillic (U+0421 U+0410 U+0405 U+0415) reads as the Latin one, every letter having an ASCII
twin in the Unicode confusables data (through `confusable-homoglyphs`). Limits: the comparison
is with ASCII only (a Cyrillic id that looks like a Greek one is not caught), and an id with one
letter without a twin (Russian `Delo-7`: De and El have none) passes, as real ids must.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from confusable_homoglyphs import confusables

# Alphabets whose letters are taken for each other (Unicode TR39 "confusable" scripts).
_LOOKALIKE_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE", "COPTIC")
# Letters or symbols that render as nothing (Hangul fillers, Braille blank).
_INVISIBLE = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"}
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Mn", "Me"}


def _script(ch: str) -> str | None:
    name = unicodedata.name(ch, "")
    first = name.split(" ", 1)[0]
    return first if first in _LOOKALIKE_SCRIPTS else None


@lru_cache(maxsize=4096)
def _ascii_twin(ch: str) -> str | None:
    """An ASCII letter or digit `ch` is confusable with, from the Unicode confusables data."""
    found = confusables.is_confusable(ch, greedy=True, preferred_aliases=["latin"]) or []
    for entry in found:
        for glyph in entry["homoglyphs"]:
            if glyph["c"].isascii() and glyph["c"].isalnum():
                return str(glyph["c"])
    return None


def _ascii_lookalike(value: str) -> str | None:
    """The ASCII id `value` passes for, when all its non-ASCII letters have ASCII twins."""
    letters = [ch for ch in value if unicodedata.category(ch)[0] == "L" and not ch.isascii()]
    if not letters:
        return None
    twins = {ch: _ascii_twin(ch) for ch in set(letters)}
    if any(twin is None for twin in twins.values()):
        return None
    return "".join(twins.get(ch) or ch for ch in value)


def identifier_problem(value: str) -> str | None:
    """Why `value` cannot be a case or item id, or None when it can."""
    if value != unicodedata.normalize("NFC", value):
        return "must be in Unicode normal form C"
    if value != value.strip() or "  " in value:
        return "must not start or end with spaces or hold double spaces"
    if value in (".", "..") or "/" in value or "\\" in value:
        return "must not contain '/' or '\\' or be '.' or '..'"
    scripts: set[str] = set()
    for ch in value:
        category = unicodedata.category(ch)
        if category in _REFUSED_CATEGORIES or ch in _INVISIBLE:
            return f"must not contain the invisible or control character U+{ord(ch):04X}"
        if category == "Zs" and ch != " ":
            return f"must use plain spaces, not U+{ord(ch):04X}"
        if category[0] in "LN" and unicodedata.normalize("NFKC", ch) != ch:
            plain = unicodedata.normalize("NFKC", ch)
            return f"must not contain U+{ord(ch):04X}, a look-alike of {plain!r}"
        if category == "Nd" and not ch.isascii():
            return f"must write digits as 0-9, not U+{ord(ch):04X}"
        if category[0] == "L" and (script := _script(ch)) is not None:
            scripts.add(script)
    if len(scripts) > 1:
        return f"mixes look-alike alphabets ({', '.join(sorted(scripts)).lower()})"
    if scripts - {"LATIN"} and (twin := _ascii_lookalike(value)) is not None:
        return f"reads as {twin!r} but is written in {', '.join(sorted(scripts)).lower()} letters"
    return None
