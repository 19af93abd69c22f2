"""Client benchmark: `avidence upload` against tuspy, both uploading to the same avidence server.

Everything runs on 127.0.0.1: avidence-server over a local folder and over SeaweedFS (S3). For
each file size, tuspy (64 MiB chunks, its defaults otherwise) and `avidence upload --parallel N`
for N in 1, 2, 4 each upload the same random file; every client runs as its own process, timed
from start to "the server verified it" (tuspy then polls the upload's state; avidence has also
hashed the file and checked the signed receipt). Printed: MB/s (decimal), the ratio to tuspy,
the client's peak RSS and CPU. Then resume loss: each client is SIGKILLed once ~30% of the bytes
went through a counting proxy, rerun, and the bytes sent beyond the file's size are reported.

    .venv/bin/python bench/client.py                 # 1 GiB, local and S3: ~5 min
    .venv/bin/python bench/client.py --big           # adds 8 GiB (disk: ~30 GiB, ~30 min)
    .venv/bin/python bench/client.py --link 25MB/s,100MB/s,20ms   # through a WAN model

On 127.0.0.1 every client shares the server's two cores, so the run measures CPU per byte more
than the network. `--link FLOW,LINK,RTT` puts a pacing proxy between every client and the server
(tests/support/proxy.py): each TCP connection is held to FLOW, all of them together to LINK,
and each answer is held back RTT, a model of a WAN path on which one flow cannot fill the link
(window / round-trip time), as between an interrogation room and a remote evidence server.

It asserts nothing about absolute times; the target (>= 1.3x tuspy) is reported as met or not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import clients
from measure import CpuMeter, DataFiles, MiB, human, parse_size, wait_quiet
from results import Result
from servers import ROOT, AvidenceServer, SeaweedServer, start_seaweed

from support.proxy import fault_proxy, sigkill_after

BIN = Path(sys.executable).parent
PARALLEL = (1, 2, 4)
TARGET = 1.3
KILL_AT = 0.3
RUN_TIMEOUT = 1800.0  # one upload, even of 8 GiB on S3; every wait below is bounded


@dataclass
class ClientResult(Result):
    rss_peak: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Link:
    """The WAN model of `--link`: bytes/s per connection and in all, and the round-trip time."""

    flow: float
    total: float
    rtt: float

    @property
    def label(self) -> str:
        return f"wan {self.flow / 1e6:.0f}/{self.total / 1e6:.0f} MB/s {self.rtt * 1000:.0f} ms"


def parse_link(text: str) -> Link:
    """`25MB/s,100MB/s,20ms` -> Link (rates in size units per second, RTT in ms or s)."""
    try:
        flow, total, rtt = (part.strip() for part in text.split(","))
        delay = (
            float(rtt.removesuffix("ms")) / 1000 if rtt.endswith("ms") else float(rtt.rstrip("s"))
        )
        link = Link(
            parse_size(flow.removesuffix("/s")), parse_size(total.removesuffix("/s")), delay
        )
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not FLOW,LINK,RTT: {text!r} ({exc})") from None
    if link.flow <= 0 or link.total <= 0 or link.rtt < 0:
        raise argparse.ArgumentTypeError(f"rates must be positive and RTT not negative: {text!r}")
    return link


@dataclass
class ResumeLoss:
    target: str
    size: int
    sent_before_kill: int
    resent: int  # bytes sent in both runs beyond the file's size (headers included)
    chunk: int


# -- the clients, each its own process --------------------------------------------------------


def tuspy_child(url: str, token: str, path: str, chunk: int, resume_file: str) -> None:
    """Run in a child process: tuspy's uploader, resumable through its URL storage."""
    from tusclient.client import TusClient
    from tusclient.storage.filestorage import FileStorage

    headers = {"Authorization": f"Bearer {token}"}
    client = TusClient(url, headers=headers)
    uploader = client.uploader(
        file_path=path,
        chunk_size=chunk,
        metadata={"case": "BENCH-C", "filename": Path(path).name},
        store_url=True,
        url_storage=FileStorage(resume_file),
        retries=0,
    )
    uploader.upload()
    assert uploader.url is not None
    clients._wait_verified_sync(uploader.url, headers)


def command(client: str, *, url: str, token: str, path: Path, state: Path) -> list[str]:
    """The command line of one upload; `url` is the server's base URL (no /files/)."""
    if client == "tuspy":
        return [
            sys.executable,
            str(Path(__file__).resolve()),
            "tuspy-child",
            f"{url}/files/",
            token,
            str(path),
            str(clients.TUSPY_CHUNK),
            str(state / "tuspy-urls.json"),
        ]
    parallel = client.removeprefix("avidence -p")
    return [
        str(BIN / "avidence"),
        "upload",
        str(path),
        "--server",
        url,
        "--token",
        token,
        "--case",
        "BENCH-C",
        "--parallel",
        parallel,
        "--state-dir",
        str(state),
        "--json",
    ]


def client_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVIDENCE_")}
    env["AVIDENCE_CONFIG"] = str(tmp / "no-config.toml")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent), str(ROOT / "tests")])
    return env


def timed_upload(
    client: str,
    server: AvidenceServer,
    path: Path,
    tmp: Path,
    result: ClientResult,
    link: Link | None,
) -> None:
    state = Path(tempfile.mkdtemp(prefix="state-", dir=tmp))
    with contextlib.ExitStack() as stack:
        url = server.url.removesuffix("/files/")
        if link is not None:
            url = stack.enter_context(
                fault_proxy(
                    server.port, rate=link.flow, link_rate=link.total, answer_delay=link.rtt
                )
            ).url
        argv = command(client, url=url, token=server.token, path=path, state=state)
        _run_timed(argv, server, state, tmp, result)


def _run_timed(
    argv: list[str],
    server: AvidenceServer,
    state: Path,
    tmp: Path,
    result: ClientResult,
) -> None:
    log = state / "client.log"
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=client_env(tmp))
        meter = CpuMeter({"server": server.pid})
        meter.start()
        code, usage = reap(proc)
        meter.stop()
        seconds = time.perf_counter() - started
    if code != 0:
        result.errors.append(f"exit {code}: {log.read_text(errors='replace')[-600:]}")
        return
    result.seconds.append(seconds)
    result.rss_peak.append(usage.ru_maxrss * 1024)  # the kernel's own peak, in KiB
    result.client_cores.append((usage.ru_utime + usage.ru_stime) / seconds)
    result.server_cores.append(meter.share("server") or 0.0)
    result.other_cores.append(meter.others())


def reap(proc: subprocess.Popen[bytes]) -> tuple[int, resource.struct_rusage]:
    """Wait (bounded) for the child and return its exit status and its own resource usage."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage
        if time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.02)


def resume_loss(client: str, server: AvidenceServer, path: Path, tmp: Path) -> ResumeLoss:
    """Kill the client (SIGKILL) once ~30% went through the proxy, rerun it to the end."""
    size = path.stat().st_size
    state = Path(tempfile.mkdtemp(prefix="resume-", dir=tmp))
    with fault_proxy(server.port) as proxy:
        argv = command(client, url=proxy.url, token=server.token, path=path, state=state)
        env = client_env(tmp)
        child = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        before = sigkill_after(child, proxy, sent=KILL_AT * size, timeout=RUN_TIMEOUT)
        rerun = subprocess.run(argv, capture_output=True, env=env, timeout=RUN_TIMEOUT)
        if rerun.returncode != 0:
            raise RuntimeError(f"{client} resume failed: {rerun.stdout[-400:]!r}")
        chunk = clients.TUSPY_CHUNK if client == "tuspy" else 64 * MiB
        return ResumeLoss(client, size, before, proxy.bytes_up - size, chunk)


# -- the run ----------------------------------------------------------------------------------


def clients_of() -> list[str]:
    return ["tuspy", *(f"avidence -p{n}" for n in PARALLEL)]


def run_store(
    where: str,
    server: AvidenceServer,
    files: DataFiles,
    sizes: list[int],
    args: argparse.Namespace,
    tmp: Path,
) -> tuple[list[ClientResult], list[ResumeLoss]]:
    results: list[ClientResult] = []
    losses: list[ResumeLoss] = []
    for size in sizes:
        path = files.get(size)
        for rep in range(args.repeat):
            for client in clients_of():
                place = f"{where} {args.link.label}" if args.link else where
                key = f"{place}/{human(size)}/{client}"
                result = next((r for r in results if r.key == key), None)
                if result is None:
                    result = ClientResult(key, f"avidence -> {where}", client, size)
                    results.append(result)
                if args.quiet_wait > 0:
                    wait_quiet(max_wait=args.quiet_wait)
                timed_upload(client, server, path, tmp, result, args.link)
                best = f"{result.best:.0f} MB/s" if result.seconds else "failed"
                print(f"  {key} round {rep + 1}: {best}", flush=True)
        if not args.skip_resume and size == sizes[0]:
            for client in ("tuspy", "avidence -p4"):
                loss = resume_loss(client, server, path, tmp)
                loss.target = f"{where} {client}"
                print(
                    f"  {where} resume {client}: re-sent {human(max(loss.resent, 0))}", flush=True
                )
                losses.append(loss)
    return results, losses


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def _tuspy_of(results: list[ClientResult], r: ClientResult) -> ClientResult | None:
    group = r.key.rsplit("/", 1)[0]
    return next((t for t in results if t.client == "tuspy" and t.key.startswith(group)), None)


def report(results: list[ClientResult], losses: list[ResumeLoss]) -> list[dict[str, object]]:
    """Print the table, the resume losses and the target verdicts; return the verdicts."""
    print()
    print(
        f"{'store/size/client':30} {'MB/s':>6} {'median':>7} {'x tuspy':>8} {'peak RSS':>10} "
        f"{'client CPU-s/GB':>15} {'server CPU-s/GB':>15} {'other load':>10}"
    )
    checks: list[dict[str, object]] = []
    for r in results:
        base = _tuspy_of(results, r)
        ratio = r.best / base.best if r.best and base and base.best else None
        rss = human(max(r.rss_peak)) if r.rss_peak else "-"
        print(
            f"{r.key:30} {r.best or 0:6.0f} {r.median or 0:7.0f} "
            f"{f'{ratio:.2f}' if ratio else '-':>8} {rss:>10} {r.cpu_per_gb(r.client_cores):>15} "
            f"{r.cpu_per_gb(r.server_cores):>15} {_median(r.other_cores):>10}"
            + (f"  errors: {r.errors[-1][:200]}" if r.errors else "")
        )
        if r.client != "tuspy" and ratio is not None:
            checks.append({"target": r.key, "ratio": round(ratio, 2), "met": ratio >= TARGET})
    if losses:
        print()
        print(
            f"{'resume after SIGKILL at ~30%':30} {'sent before':>12} {'re-sent':>10} {'chunk':>8}"
        )
        for loss in losses:
            print(
                f"{loss.target:30} {human(loss.sent_before_kill):>12} "
                f"{human(max(loss.resent, 0)):>10} {human(loss.chunk):>8}"
            )
    groups = sorted({str(c["target"]).rsplit("/", 1)[0] for c in checks})
    for group in groups:
        best = max(
            (c for c in checks if str(c["target"]).startswith(group)),
            key=lambda c: float(c["ratio"]),
        )  # type: ignore[arg-type]
        verdict = "met" if best["met"] else "MISSED"
        print(
            f"target >= {TARGET}x tuspy, {group}: best {best['target']} {best['ratio']}x, {verdict}"
        )
    return checks


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("1GiB"))
    parser.add_argument("--big", action="store_true", help="also 8 GiB (off by default)")
    parser.add_argument("--stores", default="local,s3")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-resume", action="store_true")
    parser.add_argument("--quiet-wait", type=float, default=20.0)
    parser.add_argument("--data-cache", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--link",
        type=parse_link,
        help="FLOW,LINK,RTT: upload through a WAN model, e.g. 25MB/s,100MB/s,20ms",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "tuspy-child":
        _, _, url, token, path, chunk, resume = sys.argv
        tuspy_child(url, token, path, int(chunk), resume)
        return 0
    args = parse_args(argv)
    sizes = [args.size] + ([8 * 1024 * MiB] if args.big else [])
    print(
        f"client uploads of {', '.join(human(s) for s in sizes)}; tuspy chunks "
        f"{human(clients.TUSPY_CHUNK)}; avidence --parallel {PARALLEL}; {args.repeat} round(s)"
    )
    results: list[ClientResult] = []
    losses: list[ResumeLoss] = []
    with tempfile.TemporaryDirectory(prefix="avidence-client-bench-") as folder:
        tmp = Path(folder)
        files = DataFiles(args.data_cache or tmp / "data")
        seaweed: SeaweedServer | None = None
        try:
            for where in args.stores.split(","):
                if where == "s3":
                    seaweed = start_seaweed(tmp / "seaweed")
                    server = AvidenceServer.s3(tmp / "avidence-s3", seaweed, "client-bench")
                else:
                    server = AvidenceServer(tmp / "avidence-local")
                server.start()
                try:
                    got, lost = run_store(where, server, files, sizes, args, tmp)
                    results += got
                    losses += lost
                finally:
                    server.stop()
                    if seaweed is not None:
                        seaweed.stop()
                        seaweed = None
        finally:
            if seaweed is not None:
                seaweed.stop()
    checks = report(results, losses)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "results": [asdict(r) for r in results],
                    "resume": [asdict(x) for x in losses],
                    "checks": checks,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
