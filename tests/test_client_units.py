"""Client pieces without a server: part planning, sizes, URLs, backoff, state files, identity,
settings precedence, and the exit-code table in `avidence --help`."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from pathlib import Path

import blake3
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from avidence.client import progress as progress_module
from avidence.client.cli import main
from avidence.client.config import Settings, endpoints, parse_size
from avidence.client.errors import FileChanged, InputError
from avidence.client.files import check_stat, check_unchanged, identify
from avidence.client.hashing import ChunkDigests, FileHasher
from avidence.client.parts import MIN_PART, MIN_REQUEST, chunk_grid, plan_parts, request_size
from avidence.client.progress import FileProgress
from avidence.client.state import Part, StateStore, UploadState, upload_key
from avidence.client.tus import (
    RetryPolicy,
    ServerCaps,
    TusClient,
    _answer,
    _raise_for,
    encode_metadata,
)

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("size", "parallel", "count"),
    [(0, 4, 1), (1, 4, 1), (MIN_PART * 2, 4, 2), (100 * MiB + 1, 4, 4), (100 * MiB, 1, 1)],
)
def test_parts_cover_the_file_exactly(size: int, parallel: int, count: int) -> None:
    parts = plan_parts(size, parallel)
    assert len(parts) == count
    assert parts[0].start == 0
    assert sum(p.length for p in parts) == size
    for before, after in itertools.pairwise(parts):
        assert after.start == before.start + before.length


@pytest.mark.parametrize(
    ("chunk", "parts", "each"),
    [
        (64 * MiB, 1, 64 * MiB),
        (64 * MiB, 4, 16 * MiB),  # a cut or a crash costs the chunk size, not four of them
        (64 * MiB, 16, MIN_REQUEST),
        (2 * MiB, 4, 2 * MiB),  # never larger than asked
    ],
)
def test_parallel_parts_share_the_chunk_size(chunk: int, parts: int, each: int) -> None:
    assert request_size(chunk, parts) == each


@pytest.mark.parametrize(
    ("text", "size"), [("1048576", MiB), ("64MiB", 64 * MiB), ("8M", 8 * MiB), ("1G", 1024 * MiB)]
)
def test_sizes_parse_in_binary_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten", "-1", "0"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(InputError):
        parse_size(text)


@pytest.mark.parametrize(
    ("server", "endpoint", "api"),
    [
        ("http://h:8080", "http://h:8080/files/", "http://h:8080/"),
        ("http://h:8080/", "http://h:8080/files/", "http://h:8080/"),
        ("https://h/evidence/files", "https://h/evidence/files/", "https://h/evidence/"),
        ("http://h/uploads/", "http://h/uploads/", "http://h/"),
    ],
)
def test_server_urls_give_the_tus_endpoint_and_api(server: str, endpoint: str, api: str) -> None:
    assert endpoints(server) == (endpoint, api)


def test_backoff_grows_is_capped_and_jittered() -> None:
    policy = RetryPolicy(base=1.0, cap=8.0)
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0)]:
        delays = {policy.delay(failures) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1


def test_checksum_algorithm_prefers_blake3_and_needs_the_extension() -> None:
    both = ("sha1", "sha256", "blake3")
    assert ServerCaps(frozenset({"creation", "checksum"}), both, None).checksum == "blake3"
    assert ServerCaps(frozenset({"creation", "checksum"}), ("sha1",), None).checksum == "sha1"
    assert ServerCaps(frozenset({"creation"}), both, None).checksum is None


def test_metadata_is_base64_with_bare_keys_for_empty_values() -> None:
    assert encode_metadata({"case": "案", "item": ""}) == "case 5qGI,item"


def test_state_round_trips_and_is_replaced_atomically(tmp_path: Path) -> None:
    source = tmp_path / "a.ts"
    source.write_bytes(b"x" * 100)
    store = StateStore(tmp_path / "state")
    state = UploadState.new(identify(source), endpoint="http://h/files/", case="C", item="I")
    state.parts = [Part(index=0, start=0, length=100, url="http://h/files/1", offset=40)]
    store.save(state)
    loaded = store.load(state.key)
    assert loaded == state
    assert loaded is not None and loaded.confirmed == 40
    assert [s.key for s in store.all()] == [state.key]
    assert not list((tmp_path / "state").glob(".tmp-*"))
    store.path(state.key).write_text("{not json")
    assert store.load(state.key) is None  # a damaged state starts afresh


def test_state_is_one_per_destination_and_an_older_state_is_taken_over_only_for_its_own(
    tmp_path: Path,
) -> None:
    source = tmp_path / "a.ts"
    source.write_bytes(b"x" * 100)
    identity = identify(source)
    store = StateStore(tmp_path / "state")
    where = {"endpoint": "http://h/files/", "case": "C", "item": "I"}
    keys = {
        upload_key(identity, **{**where, field: value})
        for field, value in [("case", "C"), ("case", "D"), ("item", "J"), ("endpoint", "x")]
    }
    assert len(keys) == 4
    # A state from before keys named the destination: named by the file's identity alone.
    legacy = UploadState.new(identity, **where)
    legacy.key, legacy.phase, legacy.evidence_id = identity.key, "finished", "ev_1"
    store.save(legacy)
    assert store.find(identity, **{**where, "case": "D"}) is None  # another case: a new upload
    found = store.find(identity, **where)
    assert found is not None and found.evidence_id == "ev_1"
    assert found.key == upload_key(identity, **where)
    assert [s.key for s in store.all()] == [found.key]


def test_identity_changes_with_content_at_either_end(tmp_path: Path) -> None:
    path = tmp_path / "rec.ts"
    path.write_bytes(os.urandom(3 * MiB))
    first = identify(path)
    stat = path.stat()
    with path.open("r+b") as f:
        f.seek(3 * MiB - 1)
        f.write(b"\0")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime
    check_stat(first)  # cheap check cannot see it
    with pytest.raises(FileChanged):
        check_unchanged(first)
    assert identify(path).key != first.key


def test_missing_and_directory_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        identify(tmp_path / "missing")
    with pytest.raises(InputError, match="directory"):
        identify(tmp_path)


def test_flags_beat_environment_beat_config_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('server = "http://file"\ntoken = "from-file"\nparallel = 2\n')
    settings = Settings.load(config, env={"AVIDENCE_SERVER": "http://env"})
    assert settings.get("server", None) == "http://env"
    assert settings.get("server", "http://flag") == "http://flag"
    assert settings.get("token", None) == "from-file"
    assert settings.get("parallel", None, 4) == 2
    assert settings.get("chunk_size", None, "64MiB") == "64MiB"


def test_unknown_config_settings_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('sever = "typo"\n')
    with pytest.raises(InputError, match="sever"):
        Settings.load(config, env={})


def test_help_documents_exit_codes_and_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for text in ("upload", "watch", "status", "version", "Exit codes", "3  the server refused"):
        assert text in result.output
    assert CliRunner().invoke(main, ["version"]).output.startswith("avidence ")


def test_upload_without_a_server_says_so(tmp_path: Path) -> None:
    source = tmp_path / "a.ts"
    source.write_bytes(b"x")
    result = CliRunner().invoke(
        main,
        ["upload", str(source), "--case", "C"],
        env={
            "AVIDENCE_CONFIG": str(tmp_path / "none.toml"),
            "AVIDENCE_SERVER": "",
            "AVIDENCE_TOKEN": "",
        },
    )
    assert result.exit_code == 2
    assert "no server: give --server" in result.output


async def test_the_hashing_pass_gives_every_chunk_its_checksum(tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 12345)
    path = tmp_path / "rec.mp4"
    path.write_bytes(data)
    parts = plan_parts(len(data), 3)  # ranges that start off any block boundary
    grid = list(chunk_grid(parts, 400_000))
    chunks = ChunkDigests("blake3", grid, near=len(data))
    hasher = FileHasher(str(path), len(data), chunks)
    waiting = asyncio.ensure_future(chunks.get(*grid[-1]))  # asked before the pass starts
    whole = await hasher.run()
    assert whole["blake3"] == blake3.blake3(data).hexdigest()
    assert await waiting == blake3.blake3(data[grid[-1][0] :]).digest()
    for start, length in grid:
        expected = blake3.blake3(data[start : start + length]).digest()
        assert await chunks.get(start, length) == expected
    # Off the grid (a resume from an offset another chunk size left): hash it yourself.
    assert await chunks.get(1, 400_000) is None
    assert await chunks.get(grid[0][0], 399_999) is None


async def test_chunks_far_ahead_of_the_pass_or_after_a_failed_pass_are_left_to_the_sender(
    tmp_path: Path,
) -> None:
    data = os.urandom(2 * MiB)
    path = tmp_path / "rec.mp4"
    path.write_bytes(data)
    chunks = ChunkDigests("blake3", [(0, MiB), (MiB, MiB)], near=MiB // 2)
    assert await chunks.get(MiB, MiB) is None  # the pass has not come near it
    waiting = asyncio.ensure_future(chunks.get(0, MiB))
    await asyncio.sleep(0)
    path.write_bytes(data[: MiB // 2])  # the recording shrinks under the pass
    with pytest.raises(FileChanged):
        await FileHasher(str(path), len(data), chunks).run()
    assert await asyncio.wait_for(waiting, 5) is None  # woken, not left waiting for ever


def test_bytes_already_on_the_server_count_as_done_but_not_as_speed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: now[0])
    progress = FileProgress("clip.ts", 100 * MiB)
    progress.already_there(90 * MiB)  # a resume: the server held 90 MiB from before
    now[0] += 1.0
    progress.sent += 2 * MiB  # sent now, in one second
    progress.sample()
    assert progress.fraction() == pytest.approx(0.92)
    assert progress.rate == pytest.approx(2 * MiB)
    assert progress.before == 90 * MiB


async def test_a_429_is_retried_no_sooner_than_its_retry_after() -> None:
    """A server past a per-token limit answers 429 with Retry-After: the client waits that long
    (not its own shorter backoff) and goes on, instead of failing the upload."""
    answers: list[float] = []

    async def create(_: web.Request) -> web.Response:
        answers.append(time.monotonic())
        if len(answers) == 1:
            return web.json_response(
                {"error": {"code": "uploads_too_fast", "message": "slow down", "status": 429}},
                status=429,
                headers={"Retry-After": "1"},
            )
        return web.Response(status=201)

    app = web.Application()
    app.router.add_post("/files/", create)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession() as session:
            client = TusClient(
                session,
                endpoint=str(server.make_url("/files/")),
                api_base=str(server.make_url("/api/")),
                token=None,
                retry=RetryPolicy(attempts=3, base=0.01, cap=0.02),
            )

            async def once() -> int:
                async with session.post(client.endpoint) as response:
                    if response.status != 201:
                        await _raise_for(response, what="POST")
                    return response.status

            assert await client.retrying("POST", once) == 201
    finally:
        await server.close()
    assert len(answers) == 2 and answers[1] - answers[0] >= 0.95


def test_offsets_in_digits_other_than_ascii_are_no_number() -> None:
    # "²".isdigit() is True but int("²") raises: a broken server's header must not crash us.
    answer = _answer("http://x/files/1", {"Upload-Offset": "\u00b2", "Upload-Length": "\u0661"})
    assert answer.offset is None and answer.length is None
    assert _answer("http://x/files/1", {"Upload-Offset": " 7 "}).offset == 7
