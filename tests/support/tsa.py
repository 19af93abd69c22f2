"""A real RFC 3161 time-stamping authority on 127.0.0.1, built on `openssl ts -reply`.

`make_authority` writes a CA and a TSA certificate signed by it (extendedKeyUsage critical,
timeStamping), plus the `openssl ts` configuration; `LocalTsa` is a tiny aiohttp server that
hands each POSTed request to `openssl ts -reply` and answers its output. It can be stopped
and started again on the same port, to be unreachable for a while.
"""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

CONFIG = """\
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
serial = {serial}
crypto_device = builtin
signer_digest = sha256
default_policy = 1.2.3.4.1
other_policies = 1.2.3.4.2
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@dataclass(frozen=True)
class Authority:
    """The files of one TSA: its key, its certificate, the pinned PEM (TSA cert, then CA)."""

    folder: Path

    @property
    def pinned(self) -> Path:
        return self.folder / "pinned.pem"


def make_authority(folder: Path, name: str = "Test TSA") -> Authority:
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", f"/CN={name} Root",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "tsa.key", "-out", "tsa.csr", "-subj", f"/CN={name}",
        cwd=folder,
    )  # fmt: skip
    (folder / "tsa.ext").write_text(
        "extendedKeyUsage=critical,timeStamping\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
    )
    _openssl(
        "x509", "-req", "-in", "tsa.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "tsa.pem", "-days", "30", "-extfile", "tsa.ext",
        cwd=folder,
    )  # fmt: skip
    (folder / "serial").write_text("01\n")
    (folder / "tsa.cnf").write_text(CONFIG.format(serial=folder / "serial"))
    (folder / "pinned.pem").write_bytes(
        (folder / "tsa.pem").read_bytes() + (folder / "ca.pem").read_bytes()
    )
    return Authority(folder)


async def reply(authority: Authority, query: bytes) -> bytes:
    """`openssl ts -reply` for one DER TimeStampReq."""
    folder = authority.folder
    process = await asyncio.create_subprocess_exec(
        "openssl", "ts", "-reply", "-config", str(folder / "tsa.cnf"),
        "-queryfile", "/dev/stdin", "-inkey", str(folder / "tsa.key"),
        "-signer", str(folder / "tsa.pem"), "-out", "/dev/stdout",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(query), timeout=30)
    if process.returncode != 0:
        raise RuntimeError(f"openssl ts -reply failed: {err.decode(errors='replace')}")
    return out


class LocalTsa:
    """An HTTP TSA on 127.0.0.1 answering `application/timestamp-reply`."""

    def __init__(self, authority: Authority) -> None:
        self.authority = authority
        self.port = 0
        self.requests = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/tsa"

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.content_type != "application/timestamp-query":
            return web.Response(status=415)
        body = await reply(self.authority, await request.read())
        return web.Response(body=body, content_type="application/timestamp-reply")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/tsa", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        if not self.port:
            self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
