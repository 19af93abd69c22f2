"""QR codes for printed papers (the transfer list), drawn as SVG by segno.

segno is pure Python with no dependencies; an SVG data URI prints sharp at any size and fits
the pages' Content-Security-Policy (`img-src 'self' data:`), with no image route to authorise.
"""

from __future__ import annotations

import segno


def svg_data_uri(text: str) -> str:
    """`text` (a URL) as a QR code, medium error correction, in a `data:image/svg+xml` URI."""
    code = segno.make(text, error="m", micro=False)
    return str(code.svg_data_uri(scale=4, border=2))
