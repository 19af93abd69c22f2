"""Watch mode: a daemon beside a recorder that uploads each finished recording.

A file is finished when its size and mtime have not moved for `settle` seconds and no process
holds it open for writing (Linux: /proc/*/fd). After an upload the server has *proved* to hold
(receipt or evidence record equal to the local digests) the source moves to `DIR/.uploaded/`, or
is deleted with `--delete-after-verify`; anything less keeps the source where it is. Restarts are
free: resume state files are keyed by file identity, so the next scan continues where the
killed daemon stopped.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import files
from .errors import AuthError, ClientError, ExitCode, FileChanged, IntegrityError, ServerError
from .portable import move
from .progress import Reporter
from .state import StateStore
from .upload import Outcome, Uploader, UploadOptions

log = logging.getLogger("avidence.client.watch")

UPLOADED = ".uploaded"
# Names recorders and copy tools use for files still being written.
_PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".filepart", "~")


class Action(enum.Enum):
    KEEP = "keep"
    MOVE = "move"
    DELETE = "delete"


def after_upload(outcome: Outcome | None, *, delete_after_verify: bool) -> Action:
    """What to do with the source. Only a verified upload with an evidence id and the server's
    signed receipt saved lets it go; a failed, unverified or unknown outcome, or one proven
    by anything weaker than a receipt, always keeps it where it is."""
    if (
        outcome is None
        or not outcome.verified
        or not outcome.evidence_id
        or outcome.proof != "receipt"
        or not outcome.receipt_file
        or not Path(outcome.receipt_file).is_file()
    ):
        return Action.KEEP
    return Action.DELETE if delete_after_verify else Action.MOVE


@dataclass(slots=True, frozen=True)
class WatchOptions:
    directory: Path
    case: str | None = None
    case_from_dirname: bool = False
    item: str = ""
    settle: float = 30.0
    interval: float = 5.0
    delete_after_verify: bool = False
    once: bool = False
    parallel: int = 4
    chunk_size: int = 64 * 1024 * 1024
    trusted_keys: str | None = None


def candidates(directory: Path) -> Iterator[Path]:
    """Regular files under `directory`, skipping dot-files, dot-folders (`.uploaded`) and
    names that mark a file still being written."""
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or name.lower().endswith(_PARTIAL_SUFFIXES):
                continue
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                yield path


def open_for_writing() -> set[str]:
    """Paths some process has open with write access (Linux /proc; empty elsewhere).

    Processes we may not inspect are skipped: the settle time still guards their files."""
    found: set[str] = set()
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if not target.startswith("/"):
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    flags = next(
                        (int(line.split()[1], 8) for line in info if line.startswith("flags:")), 0
                    )
            except (OSError, ValueError, IndexError):
                continue
            if flags & (os.O_WRONLY | os.O_RDWR):
                found.add(target)
    return found


def case_for(path: Path, options: WatchOptions) -> str | None:
    """`--case C`, or with `--case-from-dirname` the name of the folder holding the file
    (DIR/<case>/recording.mp4). A file directly in DIR has no case folder: it takes `--case`
    when given, else None (left alone), never DIR's own name as a case number."""
    if options.case_from_dirname:
        if path.parent.absolute() != options.directory.absolute():
            return path.parent.name
        return options.case or None
    if not options.case:
        raise ClientError("give --case or --case-from-dirname")
    return options.case


def uploaded_path(directory: Path, path: Path) -> Path:
    """Where a verified source goes: `DIR/.uploaded/<same relative path>`, never overwriting."""
    target = directory / UPLOADED / path.relative_to(directory)
    candidate, n = target, 1
    while candidate.exists():
        candidate = target.with_name(f"{target.stem}.{n}{target.suffix}")
        n += 1
    return candidate


@dataclass
class Watcher:
    options: WatchOptions
    uploader: Uploader
    store: StateStore
    reporter: Reporter
    seen: dict[str, tuple[int, int, float]] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)
    worst: ExitCode = ExitCode.OK

    def settled(self, path: Path, *, now: float, writing: set[str]) -> bool:
        """Unchanged for `settle` seconds (mtime age, and for the daemon also across scans)
        and not open for writing."""
        try:
            info = path.stat()
        except OSError:
            return False
        key = str(path.absolute())
        observed = (info.st_size, info.st_mtime_ns)
        previous = self.seen.get(key)
        if previous is None or previous[:2] != observed:
            self.seen[key] = (*observed, now)
            first_seen = now
        else:
            first_seen = previous[2]
        if now - info.st_mtime < self.options.settle:
            return False
        if not self.options.once and now - first_seen < min(
            self.options.settle, self.options.interval
        ):
            return False
        return key not in writing and os.path.realpath(path) not in writing

    async def scan(self) -> None:
        now = time.time()
        writing = await asyncio.to_thread(open_for_writing)
        for path in await asyncio.to_thread(lambda: list(candidates(self.options.directory))):
            if self.settled(path, now=now, writing=writing):
                await self.process(path)

    async def process(self, path: Path) -> None:
        name = str(path.relative_to(self.options.directory))
        try:
            identity = await asyncio.to_thread(files.identify, path)
            case = case_for(path, self.options)
            if case is None:
                self._warn_once(
                    identity.key,
                    name,
                    "left alone: a file directly in the watched folder has no case folder; "
                    "move it into DIRECTORY/<case>/ or give --case for such files",
                )
                return
            state = self.store.find(
                identity, endpoint=self.uploader.tus.endpoint, case=case, item=self.options.item
            )
            if state is not None and state.phase == "failed":
                self._note_once(
                    identity.key, name, f"verification failed earlier, kept: {state.error}"
                )
                self._worse(ExitCode.INTEGRITY)
                return
            outcome = await self.uploader.upload(
                path,
                UploadOptions(
                    case=case,
                    item=self.options.item,
                    parallel=self.options.parallel,
                    chunk_size=self.options.chunk_size,
                    trusted_keys=self.options.trusted_keys,
                ),
            )
        except AuthError:
            raise  # no later scan can fix a refused token: stop with the message
        except ServerError as exc:
            if self.options.once:
                raise
            # Unattended: the server may be down for hours; the next scan tries again.
            self.reporter.event("failed", name, message=f"{exc.message}; will retry")
            self._worse(exc.exit_code)
            return
        except FileChanged as exc:
            self.reporter.event("info", name, message=f"{exc.message}; will retry")
            return
        except IntegrityError as exc:
            self.reporter.event("failed", name, message=f"{exc.message}; the source is kept")
            self._worse(ExitCode.INTEGRITY)
            return
        except ClientError as exc:
            self.reporter.event("failed", name, message=f"{exc.message}; will retry")
            self._worse(exc.exit_code)
            return
        if outcome.evidence_id:
            self.reporter.event(
                "uploaded", name, evidence_id=outcome.evidence_id, message=outcome.evidence_id
            )
        await asyncio.to_thread(self.act, path, identity, outcome)

    def act(self, path: Path, identity: files.FileIdentity, outcome: Outcome) -> None:
        action = after_upload(outcome, delete_after_verify=self.options.delete_after_verify)
        name = str(path.relative_to(self.options.directory))
        if action is Action.KEEP:
            self._note_once(identity.key, name, f"kept in place: {outcome.message}")
            return
        try:  # the file must still be the one the server proved to hold
            files.check_unchanged(identity)
        except (FileChanged, OSError) as exc:
            self.reporter.event("warning", name, message=f"not moved: {exc}")
            return
        if action is Action.DELETE:
            path.unlink()
            self.reporter.event(
                "deleted", name, message=f"deleted after verification ({outcome.proof})"
            )
        else:
            target = uploaded_path(self.options.directory, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            move(path, target)
            self.reporter.event("moved", name, message=f"moved to {target}")

    def _note_once(self, key: str, name: str, message: str) -> None:
        if key not in self.reported:
            self.reported.add(key)
            self.reporter.event("kept", name, message=message)

    def _warn_once(self, key: str, name: str, message: str) -> None:
        if key not in self.reported:
            self.reported.add(key)
            self.reporter.event("warning", name, message=message)

    def _worse(self, code: ExitCode) -> None:
        if code > self.worst:
            self.worst = code

    async def run(self) -> ExitCode:
        if not self.options.directory.is_dir():
            raise ClientError(f"{self.options.directory} is not a directory")
        while True:
            await self.scan()
            if self.options.once:
                return self.worst
            await asyncio.sleep(self.options.interval)
