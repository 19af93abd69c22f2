"""Headless Chromium for the page tests: Debian's `chromium` driven by Playwright.

Without Chromium or Playwright a test fails under CI (where `make test` installs both) and is
skipped elsewhere, with the reason.
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def chromium() -> str:
    """The Chromium executable, once Playwright is known to be importable."""
    path = shutil.which("chromium")
    if path is None:
        _missing("chromium is not installed (`make test` installs Debian's chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        _missing("the playwright package is missing (pip install -e '.[dev]')")
    assert path is not None
    return path
