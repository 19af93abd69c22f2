"""tus 1.0.0 protocol calls (OPTIONS, POST, HEAD, PATCH) and the retry policy around them.

Every HTTP answer is turned into a value or a typed error here, so the orchestration in
`upload.py` reads as a protocol, not as status-code plumbing: `Transient` (network errors, 5xx,
423, 409, stalls) is worth a pause and a retry, `UploadGone` means "create it again", and the
`ClientError` subclasses end the upload with a message. Nothing here knows about files.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import aiohttp

from .errors import (
    DECLARED_DIGEST_MISMATCH,
    PARTIAL_TAKEN,
    AuthError,
    ChecksumRejected,
    ClientError,
    IntegrityError,
    NotTusServer,
    OffsetConflict,
    ProtocolError,
    ServerError,
    Throttled,
    Transient,
    UploadFailed,
    UploadGone,
)

TUS_VERSION = "1.0.0"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
# Fastest first; "The Server MUST support at least the sha1 algorithm", so sha1 is the floor.
CHECKSUM_PREFERENCE = ("blake3", "sha256", "sha1")
# A request body that makes no progress for this long is abandoned and resumed from HEAD.
STALL_SECONDS = 60.0

T = TypeVar("T")
RetryHook = Callable[[str, BaseException, float], None]


@dataclass(slots=True, frozen=True)
class ServerCaps:
    """What OPTIONS advertised."""

    extensions: frozenset[str]
    checksum_algorithms: tuple[str, ...]
    max_size: int | None
    # Whole-file digests a PATCH may declare in `Avidence-Digests` (avidence servers only).
    declarable: tuple[str, ...] = ()

    @property
    def concatenation(self) -> bool:
        return "concatenation" in self.extensions

    @property
    def checksum(self) -> str | None:
        """The Upload-Checksum algorithm to use, or None without the checksum extension."""
        if "checksum" not in self.extensions:
            return None
        offered = {a.lower() for a in self.checksum_algorithms}
        return next((a for a in CHECKSUM_PREFERENCE if a in offered), None)


@dataclass(slots=True, frozen=True)
class Answer:
    """What one tus answer says about an upload; avidence adds its outcome headers."""

    url: str
    offset: int | None = None
    length: int | None = None
    state: str | None = None  # Avidence-Upload-State: receiving/complete/verifying/done/...
    evidence_id: str | None = None


@dataclass(slots=True, frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; `attempts` counts failures in a row without progress."""

    attempts: int = 20
    base: float = 0.5
    cap: float = 60.0

    def delay(self, failures: int) -> float:
        # "Equal jitter": at least half the backoff, so a crowd of recorder PCs that lost the
        # same link do not all come back in the same second, yet none retries too early.
        ceiling: float = min(self.cap, self.base * 2.0 ** max(0, failures - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def encode_metadata(metadata: Mapping[str, str]) -> str:
    """Upload-Metadata: `key base64(value)` pairs; empty values are sent as a bare key."""
    return ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}" if v else k for k, v in metadata.items()
    )


def upload_id(url: str) -> str:
    """The last path segment of an upload URL (avidence's upload id)."""
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]


def _int(value: str | None) -> int | None:
    # ASCII digits only: int("²") would raise on a hostile or broken server's header
    digits = value.strip() if value is not None else ""
    return int(digits) if digits.isascii() and digits.isdigit() else None


async def _message(response: aiohttp.ClientResponse) -> tuple[str, str]:
    """The server's error code and message from a JSON error body or plain text."""
    try:
        text = (await response.text(errors="replace"))[:2000]
    except (TimeoutError, aiohttp.ClientError):
        return "", response.reason or ""
    try:
        error = json.loads(text).get("error", {})
        return str(error.get("code", "")), str(error.get("message", ""))
    except (ValueError, AttributeError):
        return "", text.strip() or (response.reason or "")


MAX_RETRY_AFTER = 600.0  # a server asking for longer is waited for in steps, not trusted blindly


def _retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header (delta-seconds; anything else counts as one second)."""
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(value or "1")))
    except ValueError:
        return 1.0


async def _raise_for(response: aiohttp.ClientResponse, *, what: str) -> None:
    """Turn a non-success answer into the typed error the orchestration acts on."""
    status = response.status
    code, message = await _message(response)
    detail = f"{what}: {status} {message}".rstrip()
    if status == 401:
        raise AuthError(f"the server refused the token (401 {message}); check --token")
    if status == 403:
        raise AuthError(f"the token may not do this ({what}: 403 {message})")
    if status in (404, 410):
        raise UploadGone(detail)
    if status == 409 and code == PARTIAL_TAKEN:
        raise ProtocolError(detail, status=status, code=code)  # not an offset: never retried
    if status == 409:
        raise OffsetConflict(detail)
    if status == 460 and code == DECLARED_DIGEST_MISMATCH:
        raise IntegrityError(
            f"the server's bytes differ from the local file's digests ({message}); "
            "the upload is quarantined and the source is kept"
        )
    if status == 460:
        raise ChecksumRejected(detail)
    if status == 429:
        raise Throttled(detail, retry_after=_retry_after(response.headers.get("Retry-After")))
    if status == 423 or status >= 500:
        raise Transient(detail)
    raise ProtocolError(detail, status=status, code=code)


class TusClient:
    """One tus endpoint and the JSON API beside it, over a shared aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        endpoint: str,
        api_base: str,
        token: str | None,
        retry: RetryPolicy,
        on_retry: RetryHook | None = None,
        read_timeout: float = 120.0,
        wait: bool = False,
    ) -> None:
        self.session = session
        self.endpoint = endpoint
        self.api_base = api_base
        self.token = token
        self.retry = retry
        self.on_retry = on_retry
        self.read_timeout = read_timeout
        # On the first contact, keep retrying a server that is not up yet (refused, unknown
        # host) instead of failing at once; errors that cannot heal fail either way.
        self.wait = wait

    def _headers(self, **extra: str) -> dict[str, str]:
        headers = {"Tus-Resumable": TUS_VERSION, "Accept": "application/json", **extra}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _timeout(self, read: float | None = None) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=None, sock_connect=30, sock_read=read if read is not None else self.read_timeout
        )

    async def retrying(
        self,
        what: str,
        op: Callable[[], Awaitable[T]],
        *,
        give_up: type[ClientError] = UploadFailed,
    ) -> T:
        """Run `op`, retrying `Transient` failures with backoff until the policy gives up."""
        failures = 0
        while True:
            try:
                return await op()
            except Transient as exc:
                failures += 1
                if failures >= self.retry.attempts:
                    raise give_up(f"{what} failed {failures} times in a row: {exc}") from exc
                delay = self.retry.delay(failures)
                if isinstance(exc, Throttled):  # the server said how long: never sooner
                    delay = max(delay, exc.retry_after)
                if self.on_retry is not None:
                    self.on_retry(what, exc, delay)
                await asyncio.sleep(delay)

    # -- protocol ---------------------------------------------------------------------------

    async def options(self) -> ServerCaps:
        """Discover the server; a server that is not tus fails with a message saying so."""

        async def once() -> ServerCaps:
            async with _network(f"OPTIONS {self.endpoint}"), _first_contact(self):
                async with self.session.options(
                    self.endpoint, headers=self._headers(), timeout=self._timeout(30)
                ) as r:
                    if r.status == 401:
                        raise AuthError("the server refused the token (401); check --token")
                    if r.status >= 500:
                        raise Transient(f"OPTIONS answered {r.status}")
                    version = r.headers.get("Tus-Version") or r.headers.get("Tus-Resumable")
                    if r.status not in (200, 204) or not version:
                        raise NotTusServer(
                            f"{self.endpoint} is not a tus server: OPTIONS answered {r.status} "
                            "without Tus-Version; check --server (e.g. http://host:8080)"
                        )
                    if TUS_VERSION not in version.replace(" ", "").split(","):
                        raise NotTusServer(f"the server speaks tus {version}, not {TUS_VERSION}")
                    extensions = frozenset(
                        e.strip() for e in r.headers.get("Tus-Extension", "").split(",") if e
                    )
                    if "creation" not in extensions:
                        raise NotTusServer("the tus server does not offer the creation extension")
                    algorithms = tuple(
                        a.strip()
                        for a in r.headers.get("Tus-Checksum-Algorithm", "").split(",")
                        if a.strip()
                    )
                    declarable = tuple(
                        a.strip().lower()
                        for a in r.headers.get("Avidence-Digest-Algorithms", "").split(",")
                        if a.strip()
                    )
                    return ServerCaps(
                        extensions,
                        algorithms,
                        _int(r.headers.get("Tus-Max-Size")),
                        declarable,
                    )

        return await self.retrying("OPTIONS", once, give_up=ServerError)

    async def create(
        self,
        *,
        length: int | None,
        metadata: Mapping[str, str],
        concat: str | None = None,
        read_timeout: float | None = None,
    ) -> Answer:
        """POST a new upload (one attempt: a retried POST could create two uploads)."""
        extra = {"Upload-Metadata": encode_metadata(metadata)}
        if length is not None:
            extra["Upload-Length"] = str(length)
        if concat is not None:
            extra["Upload-Concat"] = concat
        async with _network("POST"):
            async with self.session.post(
                self.endpoint, headers=self._headers(**extra), timeout=self._timeout(read_timeout)
            ) as r:
                if r.status != 201:
                    await _raise_for(r, what="creating the upload")
                location = r.headers.get("Location")
                if not location:
                    raise ProtocolError("the server created an upload but sent no Location")
                return _answer(urljoin(self.endpoint, location), r.headers)

    async def head(self, url: str) -> Answer:
        async def once() -> Answer:
            async with _network("HEAD"):
                async with self.session.head(
                    url, headers=self._headers(), timeout=self._timeout()
                ) as r:
                    if r.status != 200:
                        await _raise_for(r, what="HEAD")
                    answer = _answer(url, r.headers)
                    if answer.offset is None:
                        raise ProtocolError("HEAD answered without Upload-Offset")
                    return answer

        return await self.retrying("HEAD", once)

    async def patch(
        self,
        url: str,
        *,
        offset: int,
        length: int,
        body: AsyncIterable[bytes],
        checksum: tuple[str, bytes] | None,
        digests: dict[str, str] | None = None,
    ) -> Answer:
        """Send `length` bytes at `offset` (one attempt); a body that stalls is abandoned.
        `digests` declares the whole file's digests (`Avidence-Digests`) for the server to
        check when this request completes the upload."""
        extra = {
            "Upload-Offset": str(offset),
            "Content-Type": OFFSET_CONTENT_TYPE,
            "Content-Length": str(length),
        }
        if digests:
            extra["Avidence-Digests"] = ", ".join(f"{k}={v}" for k, v in sorted(digests.items()))
        if checksum is not None:
            extra["Upload-Checksum"] = f"{checksum[0]} {base64.b64encode(checksum[1]).decode()}"
        loop = asyncio.get_running_loop()
        last_block = loop.time()
        body_done = False

        async def watched() -> AsyncIterator[bytes]:
            nonlocal last_block, body_done
            async for block in body:
                last_block = loop.time()
                yield block
            body_done = True

        async def send() -> Answer:
            async with _network("PATCH"):
                async with self.session.patch(
                    url, data=watched(), headers=self._headers(**extra), timeout=self._timeout()
                ) as r:
                    if r.status not in (200, 204):
                        await _raise_for(r, what="PATCH")
                    answer = _answer(url, r.headers)
                    if answer.offset is None:
                        raise ProtocolError("PATCH answered without Upload-Offset")
                    return answer

        task = asyncio.ensure_future(send())
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=5.0)
                if done:
                    return task.result()
                # Once the body is sent, sock_read bounds the wait for the answer.
                if not body_done and loop.time() - last_block > STALL_SECONDS:
                    raise Transient(f"PATCH made no progress for {STALL_SECONDS:.0f} s")
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def terminate(self, url: str) -> None:
        """DELETE an upload we abandon (termination extension); best effort, never raises."""
        try:
            async with self.session.delete(url, headers=self._headers(), timeout=self._timeout(10)):
                pass
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            pass

    # -- avidence JSON API -------------------------------------------------------------------

    async def get_json(self, path: str) -> tuple[int, Any]:
        """GET an API document: (status, parsed JSON or None); transient failures retried."""

        async def once() -> tuple[int, Any]:
            async with _network(f"GET {path}"):
                async with self.session.get(
                    urljoin(self.api_base, path.lstrip("/")),
                    headers={"Authorization": f"Bearer {self.token}"} if self.token else {},
                    timeout=self._timeout(),
                ) as r:
                    if r.status == 401:
                        raise AuthError("the server refused the token (401); check --token")
                    if r.status >= 500 or r.status == 423:
                        raise Transient(f"GET {path}: {r.status}")
                    if r.status != 200 or "json" not in r.content_type:
                        return r.status, None
                    return r.status, await r.json()

        return await self.retrying(f"GET {path}", once)

    async def get_text(self, path: str) -> tuple[int, str]:
        async def once() -> tuple[int, str]:
            async with _network(f"GET {path}"):
                async with self.session.get(
                    urljoin(self.api_base, path.lstrip("/")),
                    headers={"Authorization": f"Bearer {self.token}"} if self.token else {},
                    timeout=self._timeout(),
                ) as r:
                    if r.status >= 500:
                        raise Transient(f"GET {path}: {r.status}")
                    return r.status, await r.text()

        return await self.retrying(f"GET {path}", once)


def _answer(url: str, headers: Mapping[str, str]) -> Answer:
    return Answer(
        url=url,
        offset=_int(headers.get("Upload-Offset")),
        length=_int(headers.get("Upload-Length")),
        state=headers.get("Avidence-Upload-State"),
        evidence_id=headers.get("Avidence-Evidence-Id"),
    )


def unreachable(exc: BaseException, *, endpoint: str, wait: bool) -> ServerError | None:
    """The error a first contact that failed this way ends with at once, or None to retry.

    A malformed URL or TLS spoken to a plain HTTP server never heals; an unknown host or a
    refused connection may be a server not up yet, retried only with `--wait`. Once the
    server answered, outages are retried as usual (this is asked on the first contact only)."""
    where = urlsplit(endpoint).netloc or endpoint
    if isinstance(exc, aiohttp.InvalidURL):
        return ServerError(f"--server {endpoint}: not a valid URL ({exc}); check --server")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return ServerError(
            f"the TLS certificate of {where} is not trusted ({exc.certificate_error}); "
            "check the server's certificate and --server"
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        reason = getattr(exc, "os_error", None) or exc
        return ServerError(
            f"TLS with {where} failed ({reason}); if the server speaks plain HTTP, give "
            "--server http://..."
        )
    if wait or not isinstance(exc, aiohttp.ClientConnectorError):
        return None
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ServerError(
            f"cannot resolve host {exc.host!r} ({exc.os_error.strerror or exc.os_error}); "
            "check --server, or give --wait to wait for it"
        )
    if isinstance(exc.os_error, ConnectionRefusedError):
        return ServerError(
            f"nothing answers at {where} (connection refused): is the server running? "
            "Check --server, or give --wait to wait for it to start"
        )
    return None


class _first_contact:
    """Context manager failing at once, as `ServerError`, where retrying cannot help."""

    def __init__(self, client: TusClient) -> None:
        self.client = client

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _: Any
    ) -> None:
        if exc is None:
            return
        failure = unreachable(exc, endpoint=self.client.endpoint, wait=self.client.wait)
        if failure is not None:
            raise failure from None


class _network:
    """Context manager turning connection-level failures into `Transient`."""

    def __init__(self, what: str) -> None:
        self.what = what

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _: Any
    ) -> None:
        if isinstance(exc, aiohttp.ClientError | ConnectionError | TimeoutError):
            raise Transient(f"{self.what}: {type(exc).__name__}: {exc}".rstrip(": ")) from exc
