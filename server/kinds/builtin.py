"""The built-in kinds. Metadata values are tus `Upload-Metadata` strings, so every property is a
string; a property's `description` is the hint given when a value is malformed."""

from __future__ import annotations

from typing import Any

# ISO 8601 date-time with seconds and a zone: 2026-03-01T09:30:00+08:00 or ...Z. ASCII digits
# ([0-9], not \d, which takes any script's); "format" has the calendar checked (registry.py).
DATE_TIME = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
)


def _text(description: str, *, max_length: int = 200) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_length, "description": description}


def _time(description: str) -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": DATE_TIME,
        "format": "date-time",
        "description": f"{description}: ISO 8601 with zone, e.g. 2026-03-01T09:30:00+08:00",
    }


def _schema(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["case", *required],
        "properties": {"case": _text("the case number", max_length=128), **properties},
    }


BUILTIN: dict[str, dict[str, Any]] = {
    "interrogation": {
        "title": "Interrogation recording",
        "schema": _schema(
            ["subject", "interviewers", "room", "start", "end"],
            {
                "subject": _text("who was questioned"),
                "interviewers": {
                    "type": "string",
                    "pattern": r"^[^,\s][^,]*(,\s*[^,\s][^,]*)+$",
                    "description": "at least two interviewers, comma-separated",
                },
                "room": _text("the interrogation room"),
                "start": _time("when the recording started"),
                "end": _time("when the recording ended"),
            },
        ),
    },
    "cctv": {
        "title": "CCTV footage",
        "schema": _schema(
            ["camera", "location", "start"],
            {
                "camera": _text("the camera's id"),
                "location": _text("where the camera is"),
                "start": _time("when the footage starts"),
                "end": _time("when the footage ends"),
            },
        ),
    },
    "bodycam": {
        "title": "Body-worn camera recording",
        "schema": _schema(
            ["officer", "device", "start"],
            {
                "officer": _text("who wore the camera"),
                "device": _text("the camera's serial number"),
                "start": _time("when the recording started"),
            },
        ),
    },
    "audio": {
        "title": "Audio recording",
        "schema": _schema(["start"], {"start": _time("when the recording started")}),
    },
    "other": {"title": "Other evidence", "schema": _schema([], {})},
}

DEFAULT_KIND = "other"  # uploads that name no kind, as every client before kinds did
