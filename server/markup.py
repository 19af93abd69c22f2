"""Text into the server's own HTML pages (viewer, upload page): the one escaping rule."""

from __future__ import annotations

import html


def escape(value: object) -> str:
    """`value` as text safe inside an element or a quoted attribute."""
    return html.escape(str(value), quote=True)
