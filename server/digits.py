r"""Decimal numbers in what clients send: ASCII digits only, and not too many of them.

`str.isdigit()` and a regex's `\d` also take other scripts' digits and superscripts: `int("²")`
raises ValueError, which answered 500 where a 400 belongs (a view grant, an access cookie, a
`limit` or `days` query), and Arabic-Indic digits parse, so a Range of U+0661 "-" U+0662 was
served as bytes 1-2 where a proxy sees no valid range at all. HTTP (RFC 9110 `DIGIT`), tus and
our own formats mean 0-9. And `int()` refuses more than 4300 digits with ValueError too.
"""

from __future__ import annotations

MAX_DIGITS = 19  # 2**63 has 19 digits: nothing we count is larger


def decimal(text: str, *, max_digits: int = MAX_DIGITS) -> int | None:
    """The value of `text` when it is 1 to `max_digits` ASCII digits 0-9, else None."""
    if not 0 < len(text) <= max_digits or not text.isascii() or not text.isdigit():
        return None
    return int(text)
