"""The servers a benchmark run starts: SeaweedFS, `avidence-server serve`, and @tus/server.

Every server is a child process bound to 127.0.0.1, logging to a file in the run's temporary
folder, and stopped by `stop()` (SIGTERM, then SIGKILL) from the caller's `finally`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from avidence.storage.base import Store

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent

sys.path.insert(0, str(ROOT / "tests"))
from support.seaweed import SeaweedServer, start_seaweed  # noqa: E402
from support.tusnode import (  # noqa: E402
    NodePeer,
    free_port,
    s3_env,
    stop_process,
    wait_ready,
)
from support.tusnode import log_tail as _tail  # noqa: E402

__all__ = [
    "AvidenceServer",
    "NodePeer",
    "SeaweedServer",
    "free_port",
    "seaweed_pid",
    "start_seaweed",
]


def seaweed_pid(server: SeaweedServer) -> int | None:
    """The `weed` process id, for CPU accounting."""
    pid: int | None = server.pid
    return pid


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
        # Every finished upload queues an analysis job that reads the whole original back.
        # Without a worker in the process, an upload is timed alone and not next to the
        # analysis of the one before; the peers analyse nothing.
        self.env.setdefault("AVIDENCE_EMBEDDED_WORKER", "false")
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
        wait_ready(lambda: banner.exists(), self.proc, self.log_path, "avidence-server")

    def _create_token(self) -> str:
        # Admin commands never create a catalog; `migrate` starts the new one first.
        subprocess.run(
            [str(BIN / "avidence-server"), "migrate", "--data-dir", str(self.data_dir)],
            check=True,
            capture_output=True,
            env=self.env,
            timeout=60,
        )
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
        stop_process(self.proc)

    def log_tail(self) -> str:
        return _tail(self.log_path)


@contextlib.contextmanager
def seaweed_stores(folder: Path) -> Iterator[Callable[[Path], Store]]:
    """SeaweedFS started in `folder`, its keys in this process's environment, and a maker of
    S3 stores on fresh buckets (the benchmarks' S3 backend); SeaweedFS stops after."""
    seaweed = start_seaweed(folder)
    try:
        os.environ.update({k: v for k, v in s3_env(seaweed).items() if k.startswith("AWS_")})
        from avidence.storage.s3 import S3Store

        def s3(_: Path) -> S3Store:
            return S3Store(endpoint_url=seaweed.endpoint, bucket=f"b-{uuid.uuid4().hex[:8]}")

        yield s3
    finally:
        seaweed.stop()
