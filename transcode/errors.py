"""The two ways media work fails, so a caller can tell "retry later" from "this file is bad".

`MediaError` is about the input: ffprobe or ffmpeg refused it (not media, truncated, corrupt).
Running the same command again gives the same answer, so it is never retried. `ToolError` is
about the machine: ffmpeg missing, killed by a signal, out of disk. The input may be fine and a
later attempt may succeed. Both carry `reason`, one line meant for an operator or a case handler.
"""

from __future__ import annotations

from typing import ClassVar


class TranscodeError(Exception):
    """Base of media errors; `reason` is one readable line."""

    transient: ClassVar[bool] = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MediaError(TranscodeError):
    """The input cannot be read or converted as media; permanent for this input."""


class ToolError(TranscodeError):
    """ffmpeg/ffprobe could not run to the end for reasons outside the input; may be retried."""

    transient = True
