"""Settings merge file < environment < flags, and bad values fail with one line."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from avidence.server.config import ConfigError, Settings, load

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_sources_merge_in_order(tmp_path: Path) -> None:
    file = tmp_path / "avidence.toml"
    file.write_text('port = 9000\nstorage = "s3"\ns3_bucket = "from-file"\nmax_size = 100\n')
    env = {"AVIDENCE_PORT": "9100", "AVIDENCE_DIGESTS": "sha256,sm3"}
    settings = load(config_file=file, env=env, max_size=5)
    assert settings.port == 9100
    assert settings.s3_bucket == "from-file"
    assert settings.max_size == 5
    assert settings.digests == ("sha256", "sm3")


def test_default_database_is_sqlite_in_data_dir(tmp_path: Path) -> None:
    settings = load(env={}, data_dir=tmp_path)
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/catalog.db"
    assert (
        load(env={}, database="postgresql://u@h/db").database_url == "postgresql+asyncpg://u@h/db"
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"storage": "ftp"}, "storage: unknown kind 'ftp'"),
        ({"storage": "s3"}, "s3_bucket: required"),
        ({"port": 70000}, "port:"),
        ({"port": "eighty"}, "port: expected an integer"),
        ({"digests": "md4"}, "digests:"),
        ({"database": "mysql://x/y"}, "database: unsupported URL"),
        ({"tus_path": "files"}, "tus_path:"),
        ({"s3_part_size": 1024}, "s3_part_size:"),
    ],
)
def test_bad_settings_raise_one_line(flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(env={}, **flags)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load(config_file=tmp_path / "missing.toml", env={})
    broken = tmp_path / "broken.toml"
    broken.write_text("port = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(config_file=broken, env={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("prot = 1")
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        load(config_file=unknown, env={})


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", text, flags=re.M))
    settings = {f.name for f in fields(Settings)} - {"extra"}
    assert settings - documented == set(), "undocumented settings"
    assert documented - settings == set(), "documented settings that do not exist"
