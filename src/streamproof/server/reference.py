"""The reference server as an object: in a background thread (tests, the load harness) or
in the foreground (``streamproof serve``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Final, Self

from .app import App
from .connection import Connection
from .endpoint import DEFAULT_API_KEY
from .faults import find_fault
from .script import Script
from .send import Clock
from .timing import SendStats, Timing

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "STALL_CAP_S", "ReferenceServer", "run_server"]

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8787
STALL_CAP_S: Final = 300.0  # longer than the suite's default total timeout (120 s)
_BACKLOG: Final = 4096
_START_TIMEOUT_S: Final = 10.0


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class ReferenceServer:
    """A correct streaming server that can be told, per request, to be wrong in a named way.

    ``api_key=None`` turns authentication off. ``stall_cap_s`` bounds every response: a
    stall or a slow drip is reset there, so nothing outlives a forgotten client.
    ``ssl_context`` (a server context with its certificate loaded) serves HTTPS instead.
    ``script`` (:meth:`Script.load` or :meth:`Script.parse`) answers the requests its rules
    match with scripted replies.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = 0,
        api_key: str | None = DEFAULT_API_KEY,
        timing: Timing | None = None,
        *,
        stall_cap_s: float = STALL_CAP_S,
        ssl_context: ssl.SSLContext | None = None,
        script: Script | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.stats = SendStats()
        self.app = App(api_key, timing or Timing(), script=script)
        self._cap_ns = int(stall_cap_s * 1e9)
        self._ssl = ssl_context
        self._scheme = "http" if ssl_context is None else "https"
        self._connections: set[Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._refusing: socket.socket | None = None

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised by endpoints (each was answered with a 500)."""
        return self.app.errors

    @property
    def base_url(self) -> str:
        return f"{self._scheme}://{self._authority(self.port)}/v1"

    def url_for(
        self, faults: Iterable[str] = (), timing: Timing | str | None = None, stamps: bool = False
    ) -> str:
        """The base URL (ending in ``/v1``) that selects ``faults``, ``timing`` and stamps."""
        names = list(faults)
        try:
            refused = any(find_fault(n).refuses_connect for n in names)
        except KeyError as exc:
            raise ValueError(f"unknown fault(s): {exc.args[0]}") from None
        port = self._refusing_port() if refused else self.port
        url = f"{self._scheme}://{self._authority(port)}"
        if names:
            url += "/fault/" + ",".join(names)
        if timing is not None:
            url += "/timing/" + (timing if isinstance(timing, str) else timing.spec())
        if stamps:
            url += "/stamps"
        return url + "/v1"

    # -- background thread -----------------------------------------------------------------

    def start(self) -> Self:
        """Serve in a background thread with its own event loop; returns once listening."""
        if self._thread is not None:
            raise RuntimeError("the server is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = _new_loop()
            try:
                loop.run_until_complete(self._serve(ready.set))
            except BaseException as exc:  # reported to start(), or lost at shutdown
                failure.append(exc)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name="streamproof-server", daemon=True)
        self._thread.start()
        if not ready.wait(_START_TIMEOUT_S) or failure:
            self._thread = None
            raise RuntimeError(f"the reference server did not start: {failure[:1]}")
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections, join the thread."""
        if self._loop is not None and self._stop is not None and self._thread is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already gone
                self._loop.call_soon_threadsafe(self._request_stop)
            self._thread.join(_START_TIMEOUT_S)
        self._thread = None
        if self._refusing is not None:
            self._refusing.close()
            self._refusing = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- foreground --------------------------------------------------------------------------

    def run(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve in this thread until Ctrl-C or SIGTERM; ``on_ready(base_url)`` once listening."""

        def ready() -> None:
            # only in the main thread, and not on Windows
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self._request_stop)
            if on_ready is not None:
                on_ready(self.base_url)

        with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=_new_loop) as r:
            r.run(self._serve(ready))

    # -- internals ---------------------------------------------------------------------------

    async def _serve(self, ready: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        clock = Clock(loop)
        server = await loop.create_server(
            lambda: Connection(self.app, clock, self.stats, self._cap_ns, self._connections),
            self.host,
            self.port,
            backlog=_BACKLOG,
            ssl=self._ssl,
        )
        self.port = server.sockets[0].getsockname()[1]
        ready()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for connection in list(self._connections):
                connection.abort()
            await server.wait_closed()

    def _request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def _authority(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{port}"

    def _refusing_port(self) -> int:
        """A port bound but never listening: connecting to it is refused at once."""
        if self._refusing is None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            self._refusing = socket.socket(family, socket.SOCK_STREAM)
            self._refusing.bind((self.host, 0))
        return self._refusing.getsockname()[1]


def run_server(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    api_key: str | None = DEFAULT_API_KEY,
    timing: Timing | None = None,
    on_ready: Callable[[str], None] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    script: Script | None = None,
) -> None:
    """Serve in the foreground until Ctrl-C (``streamproof serve``)."""
    ReferenceServer(host, port, api_key, timing, ssl_context=ssl_context, script=script).run(
        on_ready
    )
