"""Shared fixtures: real SeaweedFS, real PostgreSQL, ffmpeg-made media, both stores."""

pytest_plugins = [
    "support.seaweed",
    "support.stores",
    "support.postgres",
    "support.servers",
    "support.media",
    "support.cluster",
    "support.agencies",
    "support.client_runs",
    "support.hsm",
]
