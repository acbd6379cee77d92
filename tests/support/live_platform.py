"""The platform served over loopback HTTP by uvicorn in a thread of the test process: the same
app ``sendpost-platform serve`` runs, on the test's store and clock, so tests can drive it with
real clients (a browser, the agent) and still seed and inspect the store directly."""

from __future__ import annotations

import socket
import threading

import uvicorn
from sendpost_platform.app import create_app
from sendpost_platform.config import Settings

from tests.platform.conftest import Seed


class LivePlatform:
    """The platform's app served by uvicorn on a loopback port, in a thread of this process."""

    def __init__(self, settings: Settings, seed: Seed) -> None:
        self.seed = seed
        app = create_app(settings, clock=seed.clock, store=seed.store)
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> LivePlatform:
        self._thread.start()
        for _ in range(500):
            if self._server.started:
                return self
            self._thread.join(0.01)
        raise RuntimeError("uvicorn did not start within 5 s")

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()
