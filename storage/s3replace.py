"""Replacing a finished S3 object with another one (`sealconvert.Replacer`, encrypt-existing only).

One CopyObject (or, beyond S3's 5 GiB copy limit, a multipart copy) writes the source over the
key: S3 swaps the current object in one step, so a reader gets the old bytes or the new ones. In
a versioned bucket (every Object Lock bucket is one) the old bytes stay as a noncurrent version,
so each older version of the key is then deleted by its id; retention or a legal hold on the
current version is checked first, and such an object is not touched at all.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from .errors import ObjectLocked
from .s3bucket import S3Bucket
from .s3parts import MAX_PART, client_error, copy_ranges
from .staging import is_staged_copy

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import (
        CompletedPartTypeDef,
        CopySourceTypeDef,
        ListMultipartUploadsRequestTypeDef,
        ListObjectsV2RequestTypeDef,
    )

_log = logging.getLogger("avidence.storage.s3")

# What S3 servers answer for an object without retention or a legal hold.
_NONE = {
    "ObjectLockConfigurationNotFoundError",
    "NoSuchObjectLockConfiguration",
    "NoSuchObjectLegalHold",
    "InvalidRequest",
}


async def held(bucket: S3Bucket, key: str) -> bool:
    """Whether retention (until a future date) or a legal hold keeps `key`'s current version."""
    if not bucket._lock.object_lock:
        return False
    version = await bucket._locked_version(key)
    name, s3 = bucket._k(key), bucket._s3
    try:
        kept = await bucket._run(
            s3.get_object_retention, Bucket=bucket._bucket, Key=name, VersionId=version
        )
        until = kept.get("Retention", {}).get("RetainUntilDate")
        if until is not None and until > datetime.now(UTC):
            return True
    except ClientError as exc:
        if client_error(exc)[0] not in _NONE:
            raise bucket._error(exc, key) from exc
    try:
        hold = await bucket._run(
            s3.get_object_legal_hold, Bucket=bucket._bucket, Key=name, VersionId=version
        )
    except ClientError as exc:
        if client_error(exc)[0] not in _NONE:
            raise bucket._error(exc, key) from exc
        return False
    return hold.get("LegalHold", {}).get("Status") == "ON"


async def _copy(bucket: S3Bucket, key: str, source: str, size: int) -> None:
    name, s3 = bucket._k(key), bucket._s3
    origin: CopySourceTypeDef = {"Bucket": bucket._bucket, "Key": bucket._k(source)}
    if size <= MAX_PART:
        await bucket._call(s3.copy_object, Bucket=bucket._bucket, Key=name, CopySource=origin)
        return
    upload = await bucket._call(s3.create_multipart_upload, Bucket=bucket._bucket, Key=name)
    handle = upload["UploadId"]

    async def part(number: int, first: int, last: int) -> CompletedPartTypeDef:
        out = await bucket._call(
            s3.upload_part_copy,
            Bucket=bucket._bucket,
            Key=name,
            UploadId=handle,
            PartNumber=number,
            CopySource=origin,
            CopySourceRange=f"bytes={first}-{last}",
        )
        return {"PartNumber": number, "ETag": out["CopyPartResult"].get("ETag", "")}

    try:
        parts = [await part(n, a, b) for n, (a, b) in enumerate(copy_ranges(size), start=1)]
        await bucket._call(
            s3.complete_multipart_upload,
            Bucket=bucket._bucket,
            Key=name,
            UploadId=handle,
            MultipartUpload={"Parts": parts},
        )
    except BaseException:
        abort = bucket._run(
            s3.abort_multipart_upload, Bucket=bucket._bucket, Key=name, UploadId=handle
        )
        await asyncio.shield(abort)
        raise


async def drop_older(bucket: S3Bucket, key: str) -> None:
    """Delete every noncurrent version of `key` (the plain bytes a copy stacked over). A version
    that a lock keeps is left and logged: the current one is already the sealed copy."""
    name = bucket._k(key)
    out = await bucket._call(bucket._s3.list_object_versions, Bucket=bucket._bucket, Prefix=name)
    for version in out.get("Versions", []):
        if version.get("Key") != name or version.get("IsLatest"):
            continue
        try:
            await bucket._run(
                bucket._s3.delete_object,
                Bucket=bucket._bucket,
                Key=name,
                VersionId=version["VersionId"],
            )
        except ClientError as exc:
            if client_error(exc)[0] != "AccessDenied":
                raise bucket._error(exc, key) from exc
            _log.warning("s3.replace.kept_locked_version key=%s", key)


async def staged(bucket: S3Bucket, key: str) -> list[tuple[str, str | None]]:
    """Copies of `key` staged by encrypt-existing runs: (name, None) for a finished object,
    (name, upload id) for a multipart upload never completed."""
    prefix, s3, found = bucket._k(f"{key}.s"), bucket._s3, list[tuple[str, str | None]]()
    strip = len(bucket._k(""))
    objects: ListObjectsV2RequestTypeDef = {"Bucket": bucket._bucket, "Prefix": prefix}
    while True:  # one page per 1,000 names
        page = await bucket._call(s3.list_objects_v2, **objects)
        found += [
            (item["Key"][strip:], None)
            for item in page.get("Contents", [])
            if is_staged_copy(key, item["Key"][strip:])
        ]
        if not page.get("IsTruncated"):
            break
        objects["ContinuationToken"] = page["NextContinuationToken"]
    uploads: ListMultipartUploadsRequestTypeDef = {"Bucket": bucket._bucket, "Prefix": prefix}
    while True:
        listed = await bucket._call(s3.list_multipart_uploads, **uploads)
        found += [
            (upload["Key"][strip:], upload["UploadId"])
            for upload in listed.get("Uploads", [])
            if is_staged_copy(key, upload["Key"][strip:])
        ]
        if not listed.get("IsTruncated"):
            break
        uploads["KeyMarker"] = listed.get("NextKeyMarker", "")
        uploads["UploadIdMarker"] = listed.get("NextUploadIdMarker", "")
    return found


async def replace(bucket: S3Bucket, key: str, *, source: str) -> None:
    """`Replacer.replace` on one bucket."""
    await bucket.stat(key)  # NotFound before anything changes
    info = await bucket.stat(source)
    if await held(bucket, key):
        raise ObjectLocked(f"object {key!r} is under retention or legal hold", key=key)
    await _copy(bucket, key, source, info.size)
    await drop_older(bucket, key)
    await bucket.delete(source)
