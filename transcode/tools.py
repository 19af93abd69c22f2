"""Running ffmpeg and ffprobe as child processes, and reading what they say when they fail.

Every child is started so that it dies with its parent (Linux `PR_SET_PDEATHSIG`): a worker
killed with SIGKILL must not leave an encoder running on the machine, writing into a work folder
that the next attempt will clean.
"""

from __future__ import annotations

import asyncio
import ctypes
import re
import signal
import sys
from collections import deque
from collections.abc import Iterable
from typing import Any

from .errors import MediaError, ToolError, TranscodeError

# ffmpeg prefixes messages with the component and address: "[mov,mp4 @ 0x55d0c3c0] moov atom ..."
_COMPONENT = re.compile(r"^\[[^\]]+ @ 0x[0-9a-f]+\]\s*")
# Failures that say something about the machine, not the input.
_MACHINE = ("No space left on device", "Cannot allocate memory", "Resource temporarily")
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Any:
    """libc's prctl, looked up once in the parent: the child must not load libraries."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


PREEXEC = _die_with_parent if _prctl is not None else None


def readable(stderr: Iterable[str], *, source: str = "source") -> str:
    """The last distinct messages of a tool's stderr, without addresses and the input's name."""
    lines: list[str] = []
    for raw in stderr:
        line = _COMPONENT.sub("", raw.strip())
        if line.startswith(f"{source}: "):
            line = line[len(source) + 2 :]
        if line and line not in lines:
            lines.append(line)
    return "; ".join(lines[-3:]) or "no error message"


def classify(returncode: int, stderr: Iterable[str], *, tool: str, what: str) -> TranscodeError:
    """A failed run as MediaError (the input) or ToolError (killed, out of disk or memory)."""
    messages = list(stderr)
    reason = readable(messages)
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return ToolError(f"{tool} was killed by {name} while {what}")
    if any(marker in line for line in messages for marker in _MACHINE):
        return ToolError(f"{tool} failed while {what}: {reason}")
    return MediaError(f"{tool} failed while {what}: {reason}")


async def spawn(argv: list[str], *, cwd: str | None = None) -> asyncio.subprocess.Process:
    """Start a tool with stdout and stderr piped; ToolError when the binary is missing."""
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=PREEXEC,
        )
    except FileNotFoundError:
        raise ToolError(f"{argv[0]} is not installed or not on PATH") from None


async def tail(stream: asyncio.StreamReader | None, lines: deque[str]) -> None:
    """Keep the last lines of a stream (stderr) without holding all of it."""
    if stream is None:
        return
    while raw := await stream.readline():
        lines.append(raw.decode("utf-8", "replace").rstrip())


async def stop(process: asyncio.subprocess.Process) -> None:
    """Kill a child that is still running and reap it (cancellation path)."""
    if process.returncode is None:
        try:
            process.kill()
        except ProcessLookupError:
            pass
        await process.wait()


async def version(tool: str = "ffmpeg") -> str:
    """The version string of ffmpeg/ffprobe ("5.1.9-0+deb12u1"), recorded with each derivative."""
    process = await spawn([tool, "-version"])
    out, _ = await process.communicate()
    first = out.decode("utf-8", "replace").splitlines()[:1]
    match = re.match(
        rf"{re.escape(tool.rsplit('/', 1)[-1])} version (\S+)", first[0] if first else ""
    )
    return match.group(1) if match else (first[0] if first else "unknown")
