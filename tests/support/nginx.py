"""An nginx of its own for a test or a benchmark: the binary, and a main configuration in a
prefix folder (one worker, temp paths and pid inside the prefix) around the caller's `http`
block content, so nothing outside the prefix is read or written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def write_main_conf(
    prefix: Path, http: str, *, error_level: str = "info", connections: int = 64
) -> None:
    """`prefix/nginx.conf`: one worker, everything kept under `prefix`, `http` inside `http {}`."""
    temp = "\n".join(
        f"  {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(
        f"{user}worker_processes 1;\n"
        f"pid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} {error_level};\n"
        f"events {{ worker_connections {connections}; }}\n"
        f"http {{\n{temp}\n{http}}}\n",
        encoding="utf-8",
    )
