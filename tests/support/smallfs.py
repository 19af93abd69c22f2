"""Small, size-limited filesystems for disk-full tests: a tmpfs mounted by the test.

Mounting needs root (CAP_SYS_ADMIN). Elsewhere the tests that need it are skipped, except under
CI=true, where that is a failure: CI must run them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def tmpfs(path: Path, *, size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes mounted at `path` for the block; unmounted afterwards."""
    reason = None
    if os.geteuid() != 0:
        reason = "mounting a small filesystem needs root"
    path.mkdir(parents=True, exist_ok=True)
    if reason is None:
        try:
            _mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path))
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            reason = f"cannot mount a tmpfs here: {exc}"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (required under CI)")
        pytest.skip(reason)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True, timeout=30)


def resize(path: Path, *, size: int) -> None:
    """Grow (or shrink) a mounted tmpfs: the operator freeing space."""
    _mount("-o", f"remount,size={size}", str(path))
