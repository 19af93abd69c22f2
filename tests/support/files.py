"""Test payload files and the evidence they should become."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import blake3


def random_file(path: Path, size: int) -> str:
    """Write `size` random bytes to `path` and return their BLAKE3."""
    hasher = blake3.blake3()
    with path.open("wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 1024 * 1024))
            hasher.update(block)
            out.write(block)
            left -= len(block)
    return hasher.hexdigest()


def get_json(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def tus_head(url: str, token: str) -> dict[str, str]:
    request = urllib.request.Request(
        url, method="HEAD", headers={"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(response.headers)
