"""The servers a benchmark run starts: SeaweedFS, `avidence-server serve`, and @tus/server.

Every server is a child process bound to 127.0.0.1, logging to a file in the run's temporary
folder, and stopped by `stop()` (SIGTERM, then SIGKILL) from the caller's `finally`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 15.0

sys.path.insert(0, str(ROOT / "tests"))
from support.seaweed import SeaweedServer, start_seaweed  # noqa: E402

__all__ = [
    "AvidenceServer",
    "NodePeer",
    "SeaweedServer",
    "free_port",
    "seaweed_pid",
    "start_seaweed",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seaweed_pid(server: SeaweedServer) -> int | None:
    """The `weed` process id, for CPU accounting."""
    pid: int | None = server.pid
    return pid


def s3_env(server: SeaweedServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=server.access_key,
        AWS_SECRET_ACCESS_KEY=server.secret_key,
        AWS_DEFAULT_REGION="us-east-1",
    )
    return env


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=_STOP_TIMEOUT)


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class AvidenceServer:
    """`avidence-server serve` on its own data folder, local or S3 storage."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    storage_args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""

    @classmethod
    def s3(cls, data_dir: Path, seaweed: SeaweedServer, bucket: str) -> AvidenceServer:
        return cls(
            data_dir=data_dir,
            env=s3_env(seaweed),
            storage_args=[
                "--storage",
                "s3",
                "--s3-endpoint",
                seaweed.endpoint,
                "--s3-bucket",
                bucket,
            ],
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/files/"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.token = self._create_token()
        banner = self.data_dir.parent / f"{self.data_dir.name}.banner"
        banner.unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(BIN / "avidence-server"),
                    "serve",
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    str(self.port),
                    "--banner-file",
                    str(banner),
                    *self.storage_args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        _wait(lambda: banner.exists(), self.proc, self.log_path, "avidence-server")

    def _create_token(self) -> str:
        out = subprocess.run(
            [
                str(BIN / "avidence-server"),
                "token",
                "create",
                "--data-dir",
                str(self.data_dir),
                "--role",
                "uploader",
                "--name",
                "bench",
            ],
            check=True,
            capture_output=True,
            env=self.env,
            timeout=60,
        )
        return out.stdout.decode().strip().splitlines()[-1]

    def stop(self) -> None:
        _stop(self.proc)

    def log_tail(self) -> str:
        return _tail(self.log_path)


@dataclass
class NodePeer:
    """@tus/server 2 on Node over @tus/file-store or @tus/s3-store (bench/tus-node-server.mjs)."""

    workdir: Path
    store: str  # "file" or "s3"
    seaweed: SeaweedServer | None = None
    bucket: str = ""
    part_size: int = 16 * 1024 * 1024
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def unavailable() -> str | None:
        """Why the peer cannot run here, or None when it can."""
        if shutil.which("node") is None:
            return "node is not installed"
        if not (BENCH / "node_modules" / "@tus" / "server").is_dir():
            return "bench/node_modules is missing: run `npm install` in bench/"
        return None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/files"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / f"tus-node-{self.store}.log"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = ["--port", str(self.port), "--store", self.store]
        env = dict(os.environ)
        if self.store == "file":
            args += ["--dir", str(self.workdir / "files")]
        else:
            assert self.seaweed is not None
            self.seaweed.client().create_bucket(Bucket=self.bucket)
            args += [
                "--endpoint",
                self.seaweed.endpoint,
                "--bucket",
                self.bucket,
                "--part-size",
                str(self.part_size),
            ]
            env = s3_env(self.seaweed)
        log: IO[bytes]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                ["node", str(BENCH / "tus-node-server.mjs"), *args],
                cwd=BENCH,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        _wait(
            lambda: "listening" in self.log_path.read_text(errors="replace"),
            self.proc,
            self.log_path,
            "tus-node-server",
        )

    def stop(self) -> None:
        _stop(self.proc)


def _wait(ready: Any, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            raise RuntimeError(f"{what} did not start:\n{_tail(log)}")
        time.sleep(0.05)
