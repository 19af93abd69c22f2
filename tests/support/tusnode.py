"""@tus/server 2 on Node as a peer tus server (tests/node/tus-node-server.mjs), over
@tus/file-store or @tus/s3-store; for the interop tests and the benchmarks.

`make test` installs the Node packages into tests/node/node_modules (`npm ci`). Also the small
process helpers the benchmark's servers share: wait until ready, stop, read a log's tail.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .seaweed import SeaweedServer

NODE_DIR = Path(__file__).resolve().parent.parent / "node"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def s3_env(server: SeaweedServer) -> dict[str, str]:
    """This process's environment with SeaweedFS's keys instead of any AWS_* of the machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=server.access_key,
        AWS_SECRET_ACCESS_KEY=server.secret_key,
        AWS_DEFAULT_REGION="us-east-1",
    )
    return env


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after a bounded wait."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


def log_tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_ready(
    ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, what: str
) -> None:
    """Poll `ready` until it holds; stop the process and raise with its log if it never does."""
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"{what} did not start:\n{log_tail(log)}")
        time.sleep(0.05)


@dataclass
class NodePeer:
    """@tus/server on 127.0.0.1 over a file store (in `workdir`) or an S3 bucket."""

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
        if not (NODE_DIR / "node_modules" / "@tus" / "server").is_dir():
            return "tests/node/node_modules is missing: run `npm ci` in tests/node/ (make does)"
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
            args += ["--endpoint", self.seaweed.endpoint, "--bucket", self.bucket]
            args += ["--part-size", str(self.part_size)]
            env = s3_env(self.seaweed)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                ["node", str(NODE_DIR / "tus-node-server.mjs"), *args],
                cwd=NODE_DIR,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        wait_ready(
            lambda: "listening" in self.log_path.read_text(errors="replace"),
            self.proc,
            self.log_path,
            "tus-node-server",
        )

    def stop(self) -> None:
        stop_process(self.proc)
