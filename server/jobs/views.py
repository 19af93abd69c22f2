"""How jobs, probes and derivatives are shown: JSON for the evidence API, one line for the CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from . import queue, records
from .queue import Job


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def job_json(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "profile": job.profile or None,
        "state": job.state,
        "attempts": job.attempts,
        "progress": job.progress,
        "error": job.error,
        "worker": job.worker if job.state == "running" else None,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "heartbeat_at": _iso(job.heartbeat_at),
        "finished_at": _iso(job.finished_at),
        "run_after": _iso(job.run_after) if job.state == "queued" else None,
    }


async def evidence_media(engine: AsyncEngine, evidence_id: str) -> dict[str, Any]:
    """The media part of an evidence record: probe, continuity, derivatives and jobs.

    `media` and `continuity` are None until the analysis ran (or when it failed: see `jobs`).
    Jobs are read first: a job shown done has its results committed, so they are read after."""
    jobs = [job_json(j) for j in await queue.listing(engine, evidence_id=evidence_id)]
    analysis = await records.media_of(engine, evidence_id)
    made = await records.derivatives_of(engine, evidence_id)
    return {
        "media": analysis["probe"] if analysis else None,
        "continuity": analysis["continuity"] if analysis else None,
        "derivatives": [d.to_json() for d in made],
        "jobs": jobs,
    }


async def with_media(engine: AsyncEngine, document: dict[str, Any]) -> dict[str, Any]:
    """An evidence record's JSON (`Evidence.to_json()`) extended with `evidence_media`."""
    return {**document, **await evidence_media(engine, str(document["id"]))}


def job_line(job: Job, *, now: datetime | None = None) -> str:
    """One line per job for `avidence-server jobs`, tab-separated like `token list`."""
    moment = now or datetime.now(UTC)
    progress = job.progress or {}
    parts = [job.id, job.state, job.label, job.evidence_id, f"attempt {job.attempts}"]
    if job.state == "running":
        percent = progress.get("percent")
        speed = progress.get("speed")
        parts.append(
            f"{progress.get('step', '')} {percent:.1f}%"
            if percent is not None
            else str(progress.get("step", "starting"))
        )
        if speed:
            parts.append(f"{speed:.2f}x")
        if job.heartbeat_at is not None:
            parts.append(f"heartbeat {int((moment - job.heartbeat_at).total_seconds())}s ago")
    elif job.state == "queued" and job.run_after > moment:
        parts.append(f"retry in {int((job.run_after - moment).total_seconds())}s")
    if job.error and job.state in ("failed", "queued"):
        parts.append(job.error)
    return "\t".join(parts)
