"""A fault-injecting TCP proxy on 127.0.0.1 for client tests: throttle, cut, stall, count.

It runs its own event loop in a thread, so synchronous tests driving a CLI subprocess and async
tests alike can use it; settings are plain attributes read per read(), so a test can change
them while connections are open (for example lift the throttle before a resumed run).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

BLOCK = 64 * 1024
SLACK = 0.02  # seconds of pacing a connection may catch up on after a late wake-up
_LINGER_ZERO = struct.pack("ii", 1, 0)  # close = RST
_METHODS = {b"OPTIONS", b"POST", b"HEAD", b"PATCH", b"GET", b"DELETE", b"PUT"}


@dataclass
class FaultProxy:
    """Forward 127.0.0.1:`port` to 127.0.0.1:`target_port`.

    - `rate`: client-to-server bytes per second of each connection (None: unthrottled)
    - `link_rate`: client-to-server bytes per second of all connections together, as one
      shared link (None: unthrottled); with `rate` below it, a model of a WAN path where one
      TCP flow cannot fill the link (window / round-trip time)
    - `answer_delay`: seconds each server-to-client read is held back (round-trip time)
    - `cut_after`: abort a connection once it carried this many client-to-server bytes,
      while `cuts_left` > 0 (each cut uses one)
    - `cut_answer_to`: abort a connection when the server answers a request with this method
      (e.g. "PATCH": the server kept the bytes but the client never hears so), while
      `cuts_left` > 0, after letting `answers_to_skip` such answers through
    - `stall_after` / `stall_seconds`: pause a connection's upload once, after that many bytes
    - `refuse`: abort new connections at once (the service behind looks down or restarting)
    - `reset`: end cut connections with a TCP reset (RST) instead of a close (FIN), as a
      crashed middlebox or a NAT forgetting the flow does; bytes the server had not read yet
      may then be lost on the way, which a resumable upload must survive too

    Every fault is bounded: cuts by `cuts_left`, a stall by `stall_seconds`, once per connection.
    """

    target_port: int
    rate: float | None = None
    link_rate: float | None = None
    answer_delay: float = 0.0
    cut_after: int | None = None
    cut_answer_to: str | None = None
    answers_to_skip: int = 0
    cuts_left: int = 0
    stall_after: int | None = None
    stall_seconds: float = 0.0
    refuse: bool = False
    reset: bool = False
    bytes_up: int = 0
    bytes_down: int = 0
    connections: int = 0
    cuts: int = 0
    port: int = 0
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _link_free: float = 0.0  # when the shared link has carried everything sent so far

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        if pending:
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def drop_connections(self) -> None:
        """Abort every open connection now (as a link going down would)."""
        for writer in list(self._writers):
            self._loop.call_soon_threadsafe(writer.transport.abort)

    def _take_cut(self) -> bool:
        if self.cuts_left <= 0:
            return False
        self.cuts_left -= 1
        self.cuts += 1
        return True

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.refuse:
            client_w.transport.abort()
            return
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        self._writers.update((client_w, server_w))

        def abort(*, cut: bool = True) -> None:
            for transport in (client_w.transport, server_w.transport):
                sock = transport.get_extra_info("socket")
                if cut and self.reset and sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
                transport.abort()

        last_method = b""

        async def up() -> None:
            nonlocal last_method
            carried, stalled, free = 0, False, 0.0
            while data := await client_r.read(BLOCK):
                method = data[:8].split(b" ", 1)[0]
                if method in _METHODS:
                    last_method = method
                if self.cut_after is not None and carried + len(data) > self.cut_after:
                    if self._take_cut():
                        keep = max(0, self.cut_after - carried)
                        server_w.write(data[:keep])
                        self.bytes_up += keep
                        await server_w.drain()
                        abort()
                        return
                if self.stall_after is not None and not stalled and carried >= self.stall_after:
                    stalled = True
                    await asyncio.sleep(self.stall_seconds)
                now = self._loop.time()
                # Paces kept across reads; a sleep that overshot is made up within SLACK.
                if self.rate:  # this connection's own
                    free = max(free, now - SLACK) + len(data) / self.rate
                if self.link_rate:  # the shared link's: every connection queues on it
                    self._link_free = max(self._link_free, now - SLACK) + len(data) / self.link_rate
                    free = max(free, self._link_free)
                if free > now:
                    await asyncio.sleep(free - now)
                server_w.write(data)
                carried += len(data)
                self.bytes_up += len(data)
                await server_w.drain()
            server_w.write_eof()

        async def down() -> None:
            nonlocal last_method
            while data := await server_r.read(BLOCK):
                answer_to = self.cut_answer_to
                if answer_to is not None and last_method == answer_to.encode():
                    last_method = b""  # count each answer once, however it is split
                    if self.answers_to_skip > 0:
                        self.answers_to_skip -= 1
                    elif self._take_cut():
                        abort()
                        return
                if self.answer_delay:
                    await asyncio.sleep(self.answer_delay)
                client_w.write(data)
                self.bytes_down += len(data)
                await client_w.drain()
            client_w.close()

        try:
            results = await asyncio.gather(up(), down(), return_exceptions=True)
            del results  # connection errors are what this proxy is for
        finally:
            abort(cut=False)
            self._writers.difference_update((client_w, server_w))


@contextlib.contextmanager
def fault_proxy(target_port: int, **settings: object) -> Iterator[FaultProxy]:
    proxy = FaultProxy(target_port, **settings)  # type: ignore[arg-type]
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def sigkill_after(
    child: subprocess.Popen[bytes], proxy: FaultProxy, *, sent: float, timeout: float = 30.0
) -> int:
    """SIGKILL `child` (a crash: no clean-up runs) once `sent` bytes went up through `proxy`;
    fail if it ends or stalls before. Returns the bytes that went up before the kill."""
    deadline = time.monotonic() + timeout
    try:
        while proxy.bytes_up < sent:
            if child.poll() is not None:
                raise AssertionError(f"the client ended first: {child.communicate()}")
            if time.monotonic() > deadline:
                raise AssertionError("the upload made no progress")
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.communicate()
    return proxy.bytes_up
