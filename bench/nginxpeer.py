"""nginx as the yardstick for serving: what an operator would otherwise deploy in front of the same
bytes. One worker process (the avidence server is one process too), its own prefix folder, and
one `server` block given by the benchmark: a reverse proxy to the S3 endpoint, or a static root
served with `sendfile on`.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from servers import free_port

from support.nginx import nginx_binary, write_main_conf
from support.tusnode import stop_process


@dataclass
class Nginx:
    prefix: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pid(self) -> int:
        """The one worker's pid (the master only forks; the worker serves)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return int(children[0])

    def stop(self) -> None:
        stop_process(self.proc)


def start_nginx(prefix: Path, locations: str) -> Nginx:
    """nginx on a free loopback port with `locations` inside its server block."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (Debian package nginx-light)")
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    write_main_conf(
        prefix,
        "  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 100000;\n"
        f"  server {{\n    listen 127.0.0.1:{port};\n{locations}\n  }}\n",
        error_level="warn",
        connections=256,
    )
    proc = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):  # bounded: 10 s
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/__ready__", timeout=1)
        except urllib.error.HTTPError:
            return Nginx(prefix, port, proc)
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"nginx did not start; see {prefix / 'error.log'}")


def s3_proxy(endpoint: str) -> str:
    """A location passing requests (a presigned URL's path and query) to the S3 endpoint: the
    presigned signature covers the host, which `proxy_pass` keeps as the endpoint's."""
    return f"    location / {{\n      proxy_pass {endpoint};\n      proxy_buffering on;\n    }}"


def static_root(root: Path) -> str:
    """A location serving files under `root` with sendfile (zero-copy from the page cache)."""
    return f"    location / {{\n      root {root};\n    }}"
