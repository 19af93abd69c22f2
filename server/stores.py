"""Build the configured Store; the only place that names backends."""

from __future__ import annotations

from typing import cast

from avidence.storage.base import Store
from avidence.storage.local import LocalStore

from .config import Settings


def build_store(settings: Settings) -> Store:
    if settings.storage == "s3":
        from avidence.storage.s3 import S3Store  # boto3 is only imported when S3 is used
        from avidence.storage.s3body import PartChecksum

        return S3Store(
            endpoint_url=settings.s3_endpoint or None,
            bucket=settings.s3_bucket,
            region=settings.s3_region or None,
            prefix=settings.s3_prefix,
            part_size=settings.s3_part_size,
            part_checksum=cast("PartChecksum", settings.s3_part_checksum),
        )
    return LocalStore(settings.store_root)
