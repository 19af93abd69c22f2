"""A fresh SoftHSM2 token per test, holding an Ed25519 key made inside it.

SoftHSM reads `SOFTHSM2_CONF` when the PKCS#11 library initialises; the library is loaded once
per process, so the provider re-initialises it when the token it wants is not listed (as after
an HSM is plugged in). Each test's token lives under its own tmp dir.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from avidence.client.canonical import key_id
from avidence.server import config
from avidence.server.keys import pkcs11

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "246810"
SO_PIN = "13579111"


@dataclass
class Hsm:
    """A token (label `token`) with one key (label `key`) and the PIN in `pin_file`."""

    folder: Path
    conf: Path
    token: str
    key: str
    pin_file: Path
    public: Ed25519PublicKey

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def settings(self, **more: Any) -> dict[str, Any]:
        """The settings that point a server at this token."""
        return {
            "key_provider": "pkcs11",
            "pkcs11_module": MODULE,
            "pkcs11_token": self.token,
            "pkcs11_key": self.key,
            "pkcs11_pin_file": str(self.pin_file),
            **more,
        }

    @property
    def token_dirs(self) -> list[Path]:
        return [p for p in (self.folder / "tokens").iterdir() if p.is_dir()]


def softhsm_util(conf: Path, *args: str) -> None:
    subprocess.run(
        ["softhsm2-util", *args],
        env={"SOFTHSM2_CONF": str(conf), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.fixture()
def hsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Hsm:
    if shutil.which("softhsm2-util") is None or not Path(MODULE).exists():
        pytest.fail("SoftHSM2 is missing: `make test` installs Debian's softhsm2")
    folder = tmp_path / "hsm"
    (folder / "tokens").mkdir(parents=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\n"
    )
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    monkeypatch.delenv(pkcs11.ENV_PIN, raising=False)
    token = f"avidence-{tmp_path.name[-20:]}"
    softhsm_util(conf, "--init-token", "--free", "--label", token, "--so-pin", SO_PIN, "--pin", PIN)
    pin_file = folder / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    settings = config.load(
        env={},
        data_dir=tmp_path / "unused",
        key_provider="pkcs11",
        pkcs11_module=MODULE,
        pkcs11_token=token,
        pkcs11_pin_file=str(pin_file),
    )
    public = pkcs11.generate(settings, label=settings.pkcs11_key)
    return Hsm(folder, conf, token, settings.pkcs11_key, pin_file, public)
