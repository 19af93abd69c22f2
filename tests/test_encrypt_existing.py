"""`encrypt-existing` (issue 21): a store kept in the clear is sealed in place, on the local
folder and on S3. Afterwards no stored byte holds a known plaintext frame, every object reads
back whole and by range with its recorded digests, receipts still verify; a dry run changes
nothing; a copy that does not match its digests, or an object under Object Lock, stays plain
and is reported; a reader during the conversion always gets the right bytes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import os
import random
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import blake3
import pytest
import sqlalchemy as sa

from avidence.client.verify import load_keys, verify_file
from avidence.server.catalog.schema import audit_log, data_keys, derivatives, jobs
from avidence.server.keys import convert, kek
from avidence.server.keys.datakeys import CatalogKeyRing
from avidence.server.keys.kek import FileKeks, write_new
from avidence.server.retention.records import objects_of
from avidence.storage.base import Retainer, Store
from avidence.storage.local import LocalStore
from avidence.storage.sealconvert import Converted, Converter, Outcome, inspect
from avidence.storage.sealed import SealedStore, seal
from avidence.storage.sealformat import Suite

from support.retention import upload
from support.servers import BIN, Api, make_api
from support.stores import collect
from support.tickets import issue, media_url, start_view, token_of

MiB = 1024 * 1024
SIZES = [10, 64 * 1024, 200 * 1024 + 7, 6 * MiB + 3]


def frames(n: int, *, tag: str) -> bytes:
    """Plaintext whose every 16-byte frame is recognisable: `F<tag><index>;`."""
    out = b"".join(f"F{tag}{i:010d};".encode()[:16].ljust(16, b"#") for i in range(n // 16 + 1))
    return out[:n]


@dataclass
class Plain:
    """A server over a plain store holding evidence and one derivative."""

    api: Api
    inner: Store
    data: dict[str, bytes]  # storage key -> plaintext
    evidence: list[str]
    keks: FileKeks

    def sealed(self) -> SealedStore:
        """The store as a server with encryption on sees it."""
        ring = CatalogKeyRing(self.api.catalog.engine)
        return seal(self.inner, ring=ring, kek=self.keks, suite=self.keks.active.suite)


async def _derivative(api: Api, inner: Store, evidence_id: str, data: bytes) -> str:
    key = f"derivatives/{evidence_id}/poster.jpg"
    target = await inner.create(key)

    async def one() -> AsyncIterator[bytes]:
        yield data

    await inner.append(target, offset=0, chunks=one())
    await inner.finish(target, size=len(data))
    async with api.catalog.engine.begin() as conn:
        job = (await conn.execute(sa.select(jobs.c.id).limit(1))).scalar_one()
        await conn.execute(
            derivatives.insert().values(
                id=f"drv_{evidence_id[-8:]}", evidence_id=evidence_id, job_id=job,
                profile="poster", role="poster", angle=0, storage_key=key,
                content_type="image/jpeg", size=len(data),
                blake3=blake3.blake3(data).hexdigest(),
                sha256=hashlib.sha256(data).hexdigest(),
                source_blake3="0" * 64, command=[], ffmpeg_version="test", details={},
                created_at=datetime.now(UTC),
            )
        )  # fmt: skip
    return key


@contextlib.asynccontextmanager
async def plain_store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    kind: str,
    *,
    locked: bool = False,
    suite: Suite = Suite.INTERNATIONAL,
    **settings: Any,
) -> AsyncIterator[Plain]:
    if kind == "local":
        inner: Store = LocalStore(tmp_path / "data" / "store")
    else:
        from avidence.storage.s3 import S3Store

        seaweed = request.getfixturevalue("s3_env")
        bucket = request.getfixturevalue("s3_bucket")
        if locked:
            seaweed.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        inner = S3Store(endpoint_url=seaweed.endpoint, bucket=bucket, part_size=5 * MiB)
    await inner.open()
    try:
        async for api in make_api(tmp_path, inner, max_size=64 * MiB, **settings):
            data: dict[str, bytes] = {}
            ids = []
            for n, size in enumerate(SIZES):
                body = frames(size, tag=str(n))
                evidence_id = await upload(api, body, case=f"E-{n}")
                ids.append(evidence_id)
                data[(await objects_of(api.catalog.engine, evidence_id))[0].key] = body
            poster = frames(3000, tag="P")
            data[await _derivative(api, inner, ids[1], poster)] = poster
            folder = tmp_path / "keks"
            keks = FileKeks(folder, write_new(folder, suite))
            yield Plain(api, inner, data, ids, keks)
    finally:
        await inner.close()


async def _raw(inner: Store, key: str) -> bytes:
    return await collect(await inner.read(key))


async def _count(api: Api, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    query = sa.select(sa.func.count()).select_from(table).where(*where)
    async with api.catalog.engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def _run(plain: Plain, store: SealedStore, *, dry_run: bool = False) -> convert.Summary:
    converter = Converter(store)
    ring = CatalogKeyRing(plain.api.catalog.engine)

    async def act(item: convert.Item) -> Converted:
        if dry_run:
            why, _ = await inspect(plain.inner, ring, item.key)
            return Converted(item.key, why or Outcome.SEALED, item.size)
        return await converter.convert(item.key, expect=item.digests, size=item.size)

    return await convert.run(plain.api.catalog.engine, act, actor="test", dry_run=dry_run)


@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_plain_store_is_sealed_and_reads_back_right(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with plain_store(request, tmp_path, kind) as plain:
        api = plain.api
        before = {key: await _raw(plain.inner, key) for key in plain.data}
        assert before == plain.data
        store = plain.sealed()

        dry = await _run(plain, store, dry_run=True)
        assert dry.counts == {"sealed": len(plain.data)} and not dry.failed
        assert {key: await _raw(plain.inner, key) for key in plain.data} == before
        assert await _count(api, data_keys) == 0
        assert await _count(api, audit_log, audit_log.c.action == "object.sealed") == 0

        summary = await _run(plain, store)
        assert summary.counts == {"sealed": len(plain.data)} and not summary.failed
        for key, body in plain.data.items():
            stored = await _raw(plain.inner, key)
            assert stored != body and body[:16] not in stored and body[-16:] not in stored
            assert await collect(await store.read(key)) == body
            assert (await store.stat(key)).size == len(body)
            for start in {0, 1, len(body) // 2, max(len(body) - 5, 0), 65535, 65536, 131073}:
                if start <= len(body):
                    got = await collect(await store.read(key, start=start, length=70000))
                    assert got == body[start : start + 70000], (key, start)
        assert await _count(api, audit_log, audit_log.c.action == "object.sealed") == len(
            plain.data
        )
        assert await _count(api, audit_log, audit_log.c.action == "store.encrypt_existing") == 1

        # Receipts are over the plaintext recording: they verify the bytes read back.
        keys_path = tmp_path / "keys.json"
        keys_path.write_text(await (await api.client.get("/api/keys")).text())
        for evidence_id in plain.evidence:
            url = f"/api/evidence/{evidence_id}/receipt"
            receipt = await (await api.client.get(url, headers=api.auth())).json()
            key = (await objects_of(api.catalog.engine, evidence_id))[0].key
            copy = tmp_path / f"{evidence_id}.bin"
            copy.write_bytes(await collect(await store.read(key)))
            verify_file(copy, receipt, load_keys(keys_path))

        again = await _run(plain, store)  # nothing left: every object is already sealed
        assert again.counts == {"already": len(plain.data)} and not again.failed


async def test_a_copy_that_differs_from_its_digests_leaves_the_plain_object(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with plain_store(request, tmp_path, "local") as plain:
        key, body = next(iter(plain.data.items()))
        # The stored original was altered behind the catalog's back: it must not be sealed as
        # if it were the evidence.
        assert isinstance(plain.inner, LocalStore)
        path = plain.inner.root / "objects" / key
        path.chmod(0o644)
        path.write_bytes(b"X" + body[1:])
        store = plain.sealed()
        summary = await _run(plain, store)
        assert summary.failed and summary.left_plain == [key]
        assert summary.counts["mismatch"] == 1
        assert path.read_bytes() == b"X" + body[1:]  # untouched, still readable
        assert await collect(await store.read(key)) == b"X" + body[1:]
        assert await _count(plain.api, data_keys, data_keys.c.storage_key == key) == 0


async def test_an_object_under_object_lock_is_reported_and_left_plain(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with plain_store(request, tmp_path, "s3", locked=True) as plain:
        keys = list(plain.data)
        held, free = keys[0], keys[1]
        until = datetime.now(UTC) + timedelta(days=1)
        assert isinstance(plain.inner, Retainer)
        await plain.inner.set_retention(held, until=until, mode="GOVERNANCE")
        store = plain.sealed()
        summary = await _run(plain, store)
        assert summary.left_plain == [held] and summary.counts["locked"] == 1
        assert summary.counts["sealed"] == len(keys) - 1
        assert await _raw(plain.inner, held) == plain.data[held]
        assert plain.data[free][:16] not in await _raw(plain.inner, free)
        assert await collect(await store.read(free)) == plain.data[free]
        # No plaintext is left in an older version of a converted object either.
        client = request.getfixturevalue("s3_env").client()
        bucket = request.getfixturevalue("s3_bucket")
        versions = client.list_object_versions(Bucket=bucket, Prefix=free)["Versions"]
        assert [v["Key"] for v in versions].count(free) == 1


@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_a_reader_during_the_conversion_always_gets_the_right_bytes(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with plain_store(request, tmp_path, kind) as plain:
        server_view = plain.sealed()  # what a running server with encryption on reads through
        converter_view = plain.sealed()
        keys = list(plain.data)
        done = asyncio.Event()
        reads = 0
        rng = random.Random(7)

        async def reader() -> None:
            nonlocal reads
            while not done.is_set() or reads < 50:
                key = rng.choice(keys)
                body = plain.data[key]
                start = rng.randrange(0, len(body))
                length = rng.choice([100, 70000, len(body)])
                got = await collect(await server_view.read(key, start=start, length=length))
                assert got == body[start : start + length], (key, start, length)
                assert (await server_view.stat(key)).size == len(body)
                reads += 1
                await asyncio.sleep(0)

        readers = [asyncio.create_task(reader()) for _ in range(3)]
        try:
            for _ in range(2):  # the second pass finds everything sealed
                summary = await _run(plain, converter_view)
                assert not summary.failed
        finally:
            done.set()
            outcomes = await asyncio.gather(*readers, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        assert reads >= 50
        for key, body in plain.data.items():
            assert body[:16] not in await _raw(plain.inner, key)


@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_a_run_stopped_between_record_and_swap_stays_readable_and_resumes(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with plain_store(request, tmp_path, kind) as plain:
        store = plain.sealed()

        class Died(Exception):
            pass

        async def dies(key: str, *, source: str) -> None:
            raise Died(key)  # the process ends after the record was stored, before the swap

        with monkeypatch.context() as patch:
            patch.setattr(plain.inner, "replace", dies)
            with pytest.raises(Died):
                await _run(plain, store)
        key = next(iter(sorted(plain.data)))
        body = plain.data[key]
        assert await _count(plain.api, data_keys, data_keys.c.storage_key == key) == 1
        assert await _raw(plain.inner, key) == body  # still plain, under a record
        reader = plain.sealed()
        assert await collect(await reader.read(key)) == body
        assert await collect(await reader.read(key, start=3, length=5)) == body[3:8]
        assert (await reader.stat(key)).size == len(body)

        summary = await _run(plain, store)
        assert summary.counts == {"sealed": len(plain.data)} and not summary.failed
        for key, body in plain.data.items():
            assert body[:16] not in await _raw(plain.inner, key)
            assert await collect(await reader.read(key)) == body
        if isinstance(plain.inner, LocalStore):  # no sealed copy is left beside an object
            names = [p.name for p in (plain.inner.root / "objects").rglob("*") if p.is_file()]
            assert len(names) == len(plain.data), names


async def _names_beside(inner: Store, key: str) -> list[str]:
    """Every name the backend holds that starts with `key`: objects, and unfinished writes
    (local staging files, S3 multipart uploads and their tails)."""
    if isinstance(inner, LocalStore):
        folder, _, leaf = key.rpartition("/")
        found = []
        for area in ("objects", "staging"):
            where = inner.root / area / folder
            if where.is_dir():
                found += [f"{area}:{p.name}" for p in where.iterdir() if p.name.startswith(leaf)]
        return sorted(found)
    from avidence.storage.s3 import S3Store

    assert isinstance(inner, S3Store)
    s3, bucket = inner._s3, inner._bucket
    listed = await asyncio.to_thread(s3.list_objects_v2, Bucket=bucket, Prefix=inner._k(key))
    uploads = await asyncio.to_thread(
        s3.list_multipart_uploads, Bucket=bucket, Prefix=inner._k(key)
    )
    objects = [f"objects:{o['Key'].rsplit('/', 1)[-1]}" for o in listed.get("Contents", [])]
    pending = [f"upload:{u['Key'].rsplit('/', 1)[-1]}" for u in uploads.get("Uploads", [])]
    return sorted(objects + pending)


@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_copies_left_by_killed_runs_are_removed_by_the_next_one(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A run killed while writing or checking its sealed copy leaves it under a name no later
    run picks again; the next run removes such copies, finished or half written, and nothing
    else beside the object."""
    async with plain_store(request, tmp_path, kind) as plain:
        key = sorted(plain.data)[0]
        leaf = key.rpartition("/")[2]
        finished, half = f"{key}.s{'a' * 16}", f"{key}.s{'0123456789abcdef'}"
        sidecar = f"{key}.sidecar"  # not a staged copy's name: it stays

        async def body() -> AsyncIterator[bytes]:
            yield os.urandom(6 * MiB + 5)

        for name in (finished, sidecar):
            target = await plain.inner.create(name)
            size = await plain.inner.append(target, offset=0, chunks=body())
            await plain.inner.finish(target, size=size)
        target = await plain.inner.create(half)
        await plain.inner.append(target, offset=0, chunks=body())  # killed before finishing
        before = await _names_beside(plain.inner, key)
        assert f"objects:{leaf}.s{'a' * 16}" in before and len(before) >= 4, before

        summary = await _run(plain, plain.sealed())
        assert summary.counts == {"sealed": len(plain.data)} and not summary.failed
        assert await _names_beside(plain.inner, key) == [
            f"objects:{leaf}",
            f"objects:{leaf}.sidecar",
        ]
        assert await _raw(plain.inner, sidecar)  # still there, still readable


def _cli_env(request: pytest.FixtureRequest, plain: Plain, **more: str) -> dict[str, str]:
    env = {**os.environ, "AVIDENCE_DATA_DIR": str(plain.api.settings.data_dir), **more}
    if plain.inner.name == "s3":
        seaweed = request.getfixturevalue("s3_env")
        env |= {
            "AVIDENCE_STORAGE": "s3",
            "AVIDENCE_S3_ENDPOINT": seaweed.endpoint,
            "AVIDENCE_S3_BUCKET": request.getfixturevalue("s3_bucket"),
        }
    return env


def _killed_after(env: dict[str, str], lines: int) -> list[str]:
    """Run encrypt-existing and SIGKILL it once it printed `lines` progress lines."""
    process = subprocess.Popen(
        [str(BIN / "avidence-server"), "encrypt-existing"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    seen: list[str] = []
    assert process.stdout is not None
    try:
        for line in process.stdout:
            seen.append(line)
            if len(seen) >= lines:
                process.send_signal(signal.SIGKILL)
                break
    finally:
        process.wait(timeout=60)
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL, seen
    return seen


@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_encrypt_existing_killed_midway_then_run_again_seals_everything(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with plain_store(request, tmp_path, kind) as plain:
        env = _cli_env(request, plain, AVIDENCE_ENCRYPTION="on")
        run_cli = functools.partial(
            subprocess.run, [str(BIN / "avidence-server"), "encrypt-existing"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        for lines in (1, 3):
            await asyncio.to_thread(_killed_after, env, lines)
            on = dataclasses.replace(plain.api.settings, encryption="on", storage=kind)
            reader = seal(
                plain.inner,
                ring=CatalogKeyRing(plain.api.catalog.engine),
                kek=kek.configured(on, create=False),
            )
            for key, body in plain.data.items():  # whatever the kill left is readable
                assert await collect(await reader.read(key)) == body, key
                assert (await reader.stat(key)).size == len(body)
        done = await asyncio.to_thread(run_cli)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().endswith("sealed"), done.stdout
        for key, body in plain.data.items():
            assert body[:16] not in await _raw(plain.inner, key)
            assert await collect(await reader.read(key)) == body
        again = await asyncio.to_thread(run_cli)
        assert again.returncode == 0
        assert again.stdout.strip().splitlines()[-1] == f"{len(plain.data)} already"


async def test_cli_dry_run_lists_and_changes_nothing_and_refuses_a_plain_config(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with plain_store(request, tmp_path, "local") as plain:
        cli = [str(BIN / "avidence-server"), "encrypt-existing"]
        refused = await asyncio.to_thread(
            subprocess.run, cli, env=_cli_env(request, plain), capture_output=True, text=True
        )
        assert refused.returncode == 2 and 'encryption = "on"' in refused.stderr
        env = _cli_env(request, plain, AVIDENCE_ENCRYPTION="on")
        dry = await asyncio.to_thread(
            subprocess.run, [*cli, "--dry-run"], env=env, capture_output=True, text=True
        )
        assert dry.returncode == 0, dry.stderr
        lines = dry.stdout.strip().splitlines()
        assert len(lines) == len(plain.data) + 1 and all("to seal" in x for x in lines[:-1])
        assert lines[-1] == f"dry run: {len(plain.data)} sealed"
        assert {key: await _raw(plain.inner, key) for key in plain.data} == plain.data
        assert await _count(plain.api, data_keys) == 0
        assert not (plain.api.settings.data_dir / "keys" / "kek-active").exists()

        key, body = next(iter(plain.data.items()))
        assert isinstance(plain.inner, LocalStore)
        path = plain.inner.root / "objects" / key
        path.chmod(0o644)
        path.write_bytes(body[::-1])
        failed = await asyncio.to_thread(
            subprocess.run, cli, env=env, capture_output=True, text=True
        )
        assert failed.returncode == 1, failed.stderr
        assert "DIGEST MISMATCH" in failed.stdout and key in failed.stderr


@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_a_ticket_stream_during_the_conversion_returns_the_right_bytes(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    await _streams_during_conversion(request, tmp_path, kind, database=None)


async def test_a_ticket_stream_during_the_conversion_with_a_postgres_catalog(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str
) -> None:
    # Replicas share a PostgreSQL catalog: the key records are seen across connections.
    await _streams_during_conversion(request, tmp_path, "s3", database=postgres_url)


async def _streams_during_conversion(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, *, database: str | None
) -> None:
    async with plain_store(request, tmp_path, kind, database=database) as plain:
        # The running server reads through the sealed store (encryption = "on").
        server_api = make_api(tmp_path, plain.sealed(), database=database, max_size=64 * MiB)
        async for server in server_api:
            ticket = token_of(await issue(server, plain.evidence))
            bodies = {}
            for evidence_id in plain.evidence:
                key = (await objects_of(server.catalog.engine, evidence_id))[0].key
                bodies[evidence_id] = plain.data[key]
            done = asyncio.Event()
            served = [0]
            viewers = [
                asyncio.create_task(_viewer(server, ticket, bodies, done, served, seed))
                for seed in range(2)
            ]
            try:
                summary = await _run(plain, plain.sealed())
            finally:
                done.set()
                outcomes = await asyncio.gather(*viewers, return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            assert not summary.failed and summary.counts["sealed"] == len(plain.data)
            assert served[0] >= 40


async def _viewer(
    server: Api,
    ticket: str,
    bodies: dict[str, bytes],
    done: asyncio.Event,
    served: list[int],
    seed: int,
) -> None:
    """A player seeking through the ticket's recordings, a fresh view (allowance) each time."""
    rng = random.Random(seed)
    while not done.is_set() or served[0] < 40:
        evidence_id, body = rng.choice(sorted(bodies.items()))
        grant = await start_view(server, ticket, evidence_id)
        start = rng.randrange(0, len(body))
        end = min(len(body), start + rng.choice([1, 4096, 300_000])) - 1
        response = await server.client.get(
            media_url(ticket, evidence_id, grant), headers={"Range": f"bytes={start}-{end}"}
        )
        got = await response.read()
        assert response.status == 206, (response.status, got[:200])
        assert got == body[start : end + 1], (evidence_id, start, end)
        served[0] += 1


async def test_gm_suite_seals_with_sm4_and_checks_the_recorded_sm3(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    digests = ("blake3", "sha256", "sm3")
    async with plain_store(request, tmp_path, "local", suite=Suite.GM, digests=digests) as plain:
        store = plain.sealed()
        assert store.suite is Suite.GM
        summary = await _run(plain, store)
        assert summary.counts == {"sealed": len(plain.data)}
        for key, body in plain.data.items():
            record = await store.ring.get(key)
            assert record is not None and record.header.suite is Suite.GM
            assert body[:16] not in await _raw(plain.inner, key)
            assert await collect(await store.read(key, start=1)) == body[1:]
        query = sa.select(audit_log.c.details).where(audit_log.c.action == "object.sealed")
        async with plain.api.catalog.engine.connect() as conn:
            checked = [d["checked"] for d in (await conn.execute(query)).scalars()]
        originals = len(plain.evidence)
        assert checked.count(["blake3", "sha256", "sm3"]) == originals  # the derivative: no SM3


@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_a_stream_begun_before_the_swap_reads_the_old_bytes_to_its_end(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with plain_store(request, tmp_path, kind) as plain:
        store = plain.sealed()
        key, body = max(plain.data.items(), key=lambda item: len(item[1]))
        got = bytearray()
        began, swapped = asyncio.Event(), asyncio.Event()

        async def slow() -> None:
            async for chunk in await plain.sealed().read(key):
                got.extend(chunk)
                began.set()
                await swapped.wait()  # a player paused after its first megabyte

        reader = asyncio.create_task(slow())
        await asyncio.wait_for(began.wait(), 10)
        item = await anext(i async for i in convert.items(plain.api.catalog.engine) if i.key == key)
        done = await Converter(store).convert(key, expect=item.digests, size=item.size)
        assert done.outcome is Outcome.SEALED
        assert not reader.done() and len(got) < len(body)  # swapped while the stream was open
        swapped.set()
        await asyncio.wait_for(reader, 60)
        assert bytes(got) == body
        assert body[:16] not in await _raw(plain.inner, key)


async def test_purged_evidence_is_left_out_and_a_missing_object_is_reported(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from avidence.server.catalog.schema import evidence_retention

    async with plain_store(request, tmp_path, "local") as plain:
        engine = plain.api.catalog.engine
        purged, lost = plain.evidence[0], plain.evidence[2]
        purged_key = (await objects_of(engine, purged))[0].key
        lost_key = (await objects_of(engine, lost))[0].key
        for key in (purged_key, lost_key):
            await plain.inner.delete(key)
        async with engine.begin() as conn:  # what a purge leaves: the record, bytes gone
            await conn.execute(
                evidence_retention.update()
                .where(evidence_retention.c.evidence_id == purged)
                .values(state="purged")
            )
        summary = await _run(plain, plain.sealed())
        assert purged_key not in {i.key async for i in convert.items(engine)}
        assert summary.counts == {"sealed": len(plain.data) - 2, "missing": 1}
        assert summary.left_plain == [lost_key]


async def test_a_run_stopped_inside_the_s3_swap_leaves_no_plain_version_after_the_rerun(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from avidence.storage import s3replace

    async with plain_store(request, tmp_path, "s3", locked=True) as plain:  # versioned
        store = plain.sealed()
        key = max(plain.data, key=lambda k: len(plain.data[k]))
        item = await anext(i async for i in convert.items(plain.api.catalog.engine) if i.key == key)

        async def dies(bucket: object, name: str) -> None:
            raise RuntimeError("stopped after the copy, before older versions went")

        with monkeypatch.context() as patch:
            patch.setattr(s3replace, "drop_older", dies)
            with pytest.raises(RuntimeError):
                await Converter(store).convert(key, expect=item.digests, size=item.size)
        client = request.getfixturevalue("s3_env").client()
        bucket = request.getfixturevalue("s3_bucket")

        def versions() -> list[str]:
            found = client.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
            return [v["VersionId"] for v in found if v["Key"] == key]

        assert len(await asyncio.to_thread(versions)) == 2  # the sealed copy over the plain one
        assert await collect(await plain.sealed().read(key)) == plain.data[key]
        again = await Converter(store).convert(key, expect=item.digests, size=item.size)
        assert again.outcome is Outcome.ALREADY
        assert len(await asyncio.to_thread(versions)) == 1
        assert plain.data[key][:16] not in await _raw(plain.inner, key)
