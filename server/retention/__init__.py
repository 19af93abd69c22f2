"""Retention classes, legal holds, purges, usage and quotas: what a storage admin keeps, for
how long, and how much room it takes. `setup` adds the admin API and the start-up check."""

from __future__ import annotations

from .api import setup

__all__ = ["setup"]
