"""Evidence kinds and their metadata standard (one for every agency: 数据标准统一、要素齐全).

Each kind (interrogation recording, CCTV, body-worn camera, audio, other) has a JSON Schema for
the upload's metadata; `[kinds.NAME]` tables in the config file override or add kinds. An upload
is checked at tus creation, before a byte is sent, and a refusal names every missing or
malformed field.
"""

from .registry import KINDS, Kind, Registry, load, setup

__all__ = ["KINDS", "Kind", "Registry", "load", "setup"]
