"""The client's errors and the process exit code each one ends `avidence` with.

One table, one exit path (the CLI's), as on the server: every failure a person can act on is a
`ClientError` whose message says what happened and what to do; `exit_code` tells scripts and
the watch daemon which kind of failure it was without parsing text.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # gave up after retries, or the server answered something unexpected
    USAGE = 2  # bad option, missing/unreadable file, file changed while uploading
    AUTH = 3  # the server refused the token
    SERVER = 4  # server unreachable, or not a tus server
    INTEGRITY = 5  # the server's bytes or receipt differ from the local file; source kept
    INTERRUPTED = 130


EXIT_CODES_HELP = """\b
Exit codes:
  0  every file uploaded; verified unless the output says NOT verified
     (only a plain tus server that publishes no digests leaves it unproven)
  1  upload failed (gave up after retries, unexpected server answer)
  2  usage error or bad input (missing, unreadable or changing file)
  3  the server refused the token (401/403)
  4  server unreachable, or not a tus server
  5  integrity failure: the server holds different bytes (source kept),
     or verify/verify-bundle found something that does not check out
  130 interrupted; rerun the same command to resume"""


class ClientError(Exception):
    """Base of every error the CLI reports as a message instead of a traceback."""

    exit_code: ClassVar[ExitCode] = ExitCode.FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UploadFailed(ClientError):
    """Retries ran out, or the server answered in a way the client cannot continue from."""


class ProtocolError(UploadFailed):
    """An unexpected HTTP answer; carries the status and the server's own message."""

    def __init__(self, message: str, *, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


# The server's error codes the client acts on (docs/api.md lists them all). Messages are for
# people and may be reworded; these stay.
BODY_INTERRUPTED = "body_interrupted"  # the server kept what arrived: HEAD and resume
PARTIAL_UNUSABLE = "partial_unusable"  # a partial named by a final upload is gone or expired
PARTIAL_TAKEN = "partial_taken"  # a partial was joined by a final upload (maybe our lost one)
DECLARED_DIGEST_MISMATCH = "declared_digest_mismatch"  # quarantined: never evidence


class InputError(ClientError):
    exit_code = ExitCode.USAGE


class FileChanged(InputError):
    """The file is being written to: uploading it would send a mix of two versions."""


class AuthError(ClientError):
    exit_code = ExitCode.AUTH


class ServerError(ClientError):
    exit_code = ExitCode.SERVER


class NotTusServer(ServerError):
    pass


class IntegrityError(ClientError):
    """The server's copy is not provably the local file; the source must be kept."""

    exit_code = ExitCode.INTEGRITY


class Transient(Exception):
    """A failure worth retrying after a pause: network error, 5xx, 423, a stalled answer."""


class Throttled(Transient):
    """429: the server asks for `retry_after` seconds (its Retry-After) before the next try,
    e.g. a token creating uploads faster than the server's per-token limit."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OffsetConflict(Transient):
    """409: the server's offset differs from ours; HEAD and continue from the server's."""


class ChecksumRejected(Transient):
    """460 checksum_mismatch: the chunk was damaged on the way and discarded; send it again."""


class UploadGone(Exception):
    """404/410 on an upload URL: it expired or was terminated; create a new one."""
