"""Case and item identifiers that read the same to every person and every program.

A case id is how a judge, a clerk and a case system find evidence. Two ids that look alike but
differ in bytes (`C-1` with a Latin C or a Cyrillic Es, U+0421; with a fullwidth C, U+FF23; a
right-to-left override turning `1-C` around on screen; an invisible filler) would split one case
in two, or let an uploader slip evidence into a list where nobody looks for it. Ids are also
used as folder names by case systems, so path tricks are refused too.

Chinese court numbers such as `(2024)京0105刑初123号`, usually written with fullwidth
parentheses, stay valid: CJK characters and fullwidth punctuation are fine; what is refused is a
letter or digit that has a plainer twin.
"""

from __future__ import annotations

import unicodedata

# Alphabets whose letters are taken for each other (Unicode TR39 "confusable" scripts).
_LOOKALIKE_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE", "COPTIC")
# Letters or symbols that render as nothing (Hangul fillers, Braille blank).
_INVISIBLE = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"}
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Mn", "Me"}


def _script(ch: str) -> str | None:
    name = unicodedata.name(ch, "")
    first = name.split(" ", 1)[0]
    return first if first in _LOOKALIKE_SCRIPTS else None


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
    return None
