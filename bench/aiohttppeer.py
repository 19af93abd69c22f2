"""The floor of the framework: a bare aiohttp server sending the same stored file with
`web.FileResponse` (sendfile, Range support, no checks at all), one process like avidence.

What avidence spends beyond this is its own (ticket, view and budget checks, middlewares); what
this spends beyond nginx is Python's event loop around the same `sendfile` calls.

    python bench/aiohttppeer.py ROOT PORT    # serves ROOT/<key> at http://127.0.0.1:PORT/<key>
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from servers import stop_process


@dataclass
class FilePeer:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)


def start_file_peer(root: Path, port: int) -> FilePeer:
    proc = subprocess.Popen(
        [sys.executable, __file__, str(root), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):  # bounded: 10 s
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/__ready__", timeout=1)
        except urllib.error.HTTPError:
            return FilePeer(port, proc)
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the aiohttp file server did not start")


def app(root: Path) -> web.Application:
    async def send(request: web.Request) -> web.StreamResponse:
        path = (root / request.match_info["key"]).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    served = web.Application()
    served.router.add_get("/{key:.+}", send)
    return served


if __name__ == "__main__":
    root, port = Path(sys.argv[1]).resolve(), int(sys.argv[2])
    web.run_app(app(root), host="127.0.0.1", port=port, print=None)
