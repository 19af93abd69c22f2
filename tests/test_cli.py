"""`avidence-server` commands: tokens, migrate, and start-up failures as one line."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

from click.testing import CliRunner

from avidence.server.cli import main

from support.seaweed import SeaweedServer
from support.servers import free_port

BIN = Path(sys.executable).parent


def test_token_create_prints_secret_alone_on_last_line(tmp_path: Path) -> None:
    made = CliRunner().invoke(main, ["migrate", "--data-dir", str(tmp_path)])
    assert made.exit_code == 0, made.output  # admin commands never create a catalog themselves
    result = CliRunner().invoke(
        main, ["token", "create", "--data-dir", str(tmp_path), "--role", "uploader", "--name", "r1"]
    )
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("avd_") and " " not in last
    listing = CliRunner().invoke(main, ["token", "list", "--data-dir", str(tmp_path)])
    assert listing.exit_code == 0
    token_id = listing.output.split("\t", 1)[0]
    assert token_id.startswith("tok_") and "r1" in listing.output and last not in listing.output
    revoked = CliRunner().invoke(main, ["token", "revoke", "--data-dir", str(tmp_path), token_id])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    again = CliRunner().invoke(main, ["token", "revoke", "--data-dir", str(tmp_path), token_id])
    assert again.exit_code == 2


def test_migrate_on_postgres(postgres_url: str) -> None:
    result = CliRunner().invoke(main, ["migrate", "--database", postgres_url])
    assert result.exit_code == 0, result.output
    assert "catalog at revision" in result.output


def _serve_fails(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [
            str(BIN / "avidence-server"),
            "serve",
            "--data-dir",
            str(tmp_path),
            "--port",
            str(free_port()),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_serve_refuses_unknown_storage(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path), "--storage", "ftp"])
    assert result.exit_code == 2


def test_serve_refuses_bad_settings_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('storage = "tape"\n')
    assert "storage: unknown kind 'tape'" in _serve_fails(tmp_path, "--config", str(config))
    line = _serve_fails(tmp_path, "--database", "postgresql://nobody@127.0.0.1:1/x")
    assert "unreachable" in line


def test_serve_refuses_bad_s3_credentials_and_unreachable_endpoint(
    tmp_path: Path, seaweed: SeaweedServer
) -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "wrong",
        "AWS_SECRET_ACCESS_KEY": "wrong",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PATH": "/usr/bin:/bin",
    }
    line = _serve_fails(
        tmp_path, "--storage", "s3", "--s3-endpoint", seaweed.endpoint, "--s3-bucket", "b1", env=env
    )
    assert "credentials" in line or "denied" in line.lower()
    line = _serve_fails(
        tmp_path,
        "--storage",
        "s3",
        "--s3-endpoint",
        f"http://127.0.0.1:{free_port()}",
        "--s3-bucket",
        "b1",
        env=env,
    )
    assert "unreachable" in line


def test_serve_answers_healthz(server_factory: object) -> None:
    server = server_factory()  # type: ignore[operator]
    with urllib.request.urlopen(server.url + "/healthz", timeout=5) as response:
        assert response.status == 200
    with urllib.request.urlopen(server.url + "/metrics", timeout=5) as response:
        assert b"avidence_http_requests_total" in response.read()


def test_serve_demo_prints_token_and_a_working_ticket_link(server_factory: object) -> None:
    server = server_factory("--demo")  # type: ignore[operator]
    log = server.log_tail(80)
    lines = [line.strip() for line in log.splitlines()]
    token = next(line.split()[-1] for line in lines if line.startswith("uploader token:"))
    assert token.startswith("avd_")
    link = next(line.split()[-1] for line in lines if line.startswith("watch the demo:"))
    assert link.startswith(server.url + "/t/")
    with urllib.request.urlopen(link, timeout=10) as response:
        page = response.read().decode()
    assert response.status == 200
    assert "demo-interrogation.mp4" in page
