"""Upload clients for the benchmark: boto3 straight to S3, tuspy, and two aiohttp tus clients.

Each returns once the server's last answer arrived. For avidence that answer comes after the
digests were checked; if the server answered that verification goes on in the background
(`Avidence-Upload-State: verifying`), the client polls HEAD until it ends, so the time is always
"bytes sent and verified". Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import boto3
import requests
from botocore.config import Config
from servers import SeaweedServer
from tusclient.client import TusClient

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"
READ_BLOCK = 4 * 1024 * 1024
VERIFY_DEADLINE = 600.0
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=1800, sock_connect=10, sock_read=300)
TUSPY_CHUNK = 64 * 1024 * 1024  # the chunk size every benchmark gives tuspy


class UploadFailed(Exception):
    """The server refused or broke an upload; the message says where."""


def encode_metadata(fields: Mapping[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


# -- boto3 ------------------------------------------------------------------------------------


def boto3_upload(seaweed: SeaweedServer, *, bucket: str, key: str, path: Path) -> None:
    """`upload_file` with boto3's default transfer settings (8 MiB parts, 10 threads)."""
    s3 = boto3.session.Session(
        aws_access_key_id=seaweed.access_key,
        aws_secret_access_key=seaweed.secret_key,
        region_name="us-east-1",
    ).client(
        "s3",
        endpoint_url=seaweed.endpoint,
        config=Config(s3={"addressing_style": "path"}, read_timeout=300),
    )
    try:
        s3.upload_file(str(path), bucket, key)
    finally:
        s3.close()


# -- tuspy ------------------------------------------------------------------------------------


def tuspy_upload(
    *,
    url: str,
    headers: Mapping[str, str],
    path: Path,
    chunk_size: int,
    metadata: Mapping[str, str],
) -> None:
    """tuspy's synchronous uploader: POST, then one PATCH per `chunk_size` bytes."""
    client = TusClient(url, headers=dict(headers))
    uploader = client.uploader(
        file_path=str(path), chunk_size=chunk_size, metadata=dict(metadata), retries=0
    )
    uploader.upload()
    if uploader.url is None:
        raise UploadFailed("tuspy finished without an upload URL")
    _wait_verified_sync(uploader.url, headers)


def tuspy_round(
    url: str, headers: Mapping[str, str], path: Path, metadata: Mapping[str, str]
) -> Callable[[int], None]:
    """One benchmark round (its argument is the round number): tuspy with TUSPY_CHUNK."""

    def once(rep: int) -> None:
        tuspy_upload(url=url, headers=headers, path=path, chunk_size=TUSPY_CHUNK, metadata=metadata)

    return once


def _wait_verified_sync(location: str, headers: Mapping[str, str]) -> None:
    deadline = time.monotonic() + VERIFY_DEADLINE
    while True:
        answer = requests.head(location, headers={**headers, **TUS}, timeout=30)
        state = answer.headers.get("Avidence-Upload-State")
        if state is None or state == "done":  # not avidence, or verified
            return
        if state not in ("verifying", "receiving"):
            raise UploadFailed(f"{location} ended {state}")
        if time.monotonic() > deadline:
            raise UploadFailed(f"{location} still {state} after {VERIFY_DEADLINE:.0f}s")
        time.sleep(0.1)


# -- aiohttp: one streamed PATCH --------------------------------------------------------------


async def file_blocks(path: Path, *, offset: int, length: int) -> AsyncIterator[bytes]:
    """`length` bytes of `path` from `offset`, read in a worker thread 4 MiB at a time."""
    fd = os.open(path, os.O_RDONLY)
    try:
        done = 0
        while done < length:  # bounded: each turn reads at least one byte or raises
            block = await asyncio.to_thread(
                os.pread, fd, min(READ_BLOCK, length - done), offset + done
            )
            if not block:
                raise UploadFailed(f"{path} ended early at {offset + done}")
            done += len(block)
            yield block
    finally:
        os.close(fd)


async def stream_upload(
    session: aiohttp.ClientSession,
    *,
    url: str,
    headers: Mapping[str, str],
    path: Path,
    offset: int = 0,
    length: int,
    metadata: Mapping[str, str],
    partial: bool = False,
) -> str:
    """POST, then the whole range as one PATCH body; returns the upload URL once verified
    (partial uploads are not verified on their own: they return once stored)."""
    create = {**headers, **TUS, "Upload-Length": str(length)}
    if metadata:
        create["Upload-Metadata"] = encode_metadata(metadata)
    if partial:
        create["Upload-Concat"] = "partial"
    async with session.post(url, headers=create) as answer:
        if answer.status != 201:
            raise UploadFailed(f"POST {url}: {answer.status} {await answer.text()}")
        location = answer.headers["Location"]
    patch = {
        **headers,
        **TUS,
        "Content-Type": OCTETS,
        "Upload-Offset": "0",
        "Content-Length": str(length),
    }
    body = file_blocks(path, offset=offset, length=length)
    async with session.patch(location, headers=patch, data=body) as answer:
        if answer.status != 204:
            raise UploadFailed(f"PATCH {location}: {answer.status} {await answer.text()}")
        if answer.headers.get("Upload-Offset") != str(length):
            raise UploadFailed(f"PATCH {location}: offset {answer.headers.get('Upload-Offset')}")
        state = answer.headers.get("Avidence-Upload-State")
    if not partial:
        await wait_verified(session, location, headers=headers, state=state)
    return location


def stream_round(
    url: str, headers: Mapping[str, str], path: Path, length: int, metadata: Mapping[str, str]
) -> Callable[[int], None]:
    """One benchmark round: the whole file as one PATCH from a fresh session."""

    async def go() -> None:
        async with new_session() as session:
            await stream_upload(
                session, url=url, headers=headers, path=path, length=length, metadata=metadata
            )

    return lambda rep: asyncio.run(go())


async def wait_verified(
    session: aiohttp.ClientSession,
    location: str,
    *,
    headers: Mapping[str, str],
    state: str | None,
) -> None:
    deadline = time.monotonic() + VERIFY_DEADLINE
    while state in ("verifying", "receiving"):
        if time.monotonic() > deadline:
            raise UploadFailed(f"{location} still {state} after {VERIFY_DEADLINE:.0f}s")
        await asyncio.sleep(0.1)
        async with session.head(location, headers={**headers, **TUS}) as answer:
            state = answer.headers.get("Avidence-Upload-State")
    if state not in (None, "done"):
        raise UploadFailed(f"{location} ended {state}")


# -- aiohttp: parallel partial uploads joined by concatenation --------------------------------


def split(length: int, parts: int) -> list[tuple[int, int]]:
    """(offset, length) of `parts` nearly equal ranges; each but the last a multiple of 1 MiB."""
    step = max(1, -(-length // parts) // (1024 * 1024)) * 1024 * 1024
    ranges = [(start, min(step, length - start)) for start in range(0, length, step)]
    return ranges


async def concat_upload(
    session: aiohttp.ClientSession,
    *,
    url: str,
    headers: Mapping[str, str],
    path: Path,
    length: int,
    parts: int,
    metadata: Mapping[str, str],
) -> tuple[str, float]:
    """tus concatenation: `parts` partial uploads at once, then one final upload joining them.
    Returns the final upload's URL and the seconds the partial uploads took (the rest of the
    time is the join and its verification)."""
    ranges = split(length, parts)
    started = time.perf_counter()
    locations = await asyncio.gather(
        *(
            stream_upload(
                session,
                url=url,
                headers=headers,
                path=path,
                offset=start,
                length=size,
                metadata={},
                partial=True,
            )
            for start, size in ranges
        )
    )
    sent = time.perf_counter() - started
    final = {
        **headers,
        **TUS,
        "Upload-Metadata": encode_metadata(metadata),
        "Upload-Concat": "final;" + " ".join(urlsplit(loc).path for loc in locations),
    }
    async with session.post(url, headers=final) as answer:
        if answer.status != 201:
            raise UploadFailed(f"final POST {url}: {answer.status} {await answer.text()}")
        location = answer.headers["Location"]
        state = answer.headers.get("Avidence-Upload-State")
    await wait_verified(session, location, headers=headers, state=state)
    return location, sent


def new_session(connections: int = 32) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        timeout=HTTP_TIMEOUT, connector=aiohttp.TCPConnector(limit=connections)
    )
