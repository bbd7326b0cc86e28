"""uvicorn in a background thread, so the web application shares the process with the scheduler."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import uvicorn

log = logging.getLogger(__name__)


class WebServer:
    """`WebServer(app, host, port).start()`; port 0 takes a free port, then read `.port`."""

    def __init__(self, app: Any, host: str, port: int, *, start_timeout: float = 10.0) -> None:
        self.app = app
        self.host = host
        self._requested_port = port
        self._start_timeout = start_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self.port: int = port

    def start(self) -> WebServer:
        if self._thread is not None:
            return self
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self._requested_port,
            lifespan="off",
            log_config=None,  # keep the process's logging setup
            access_log=False,
            # X-Forwarded-For is believed only from a reverse proxy on this machine
            proxy_headers=True,
            forwarded_allow_ips="127.0.0.1",
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=self._run, args=(server,), name="publisher-web", daemon=True)
        thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not server.started:
            if not thread.is_alive():
                raise OSError(
                    f"the web server could not listen on {self.host}:{self._requested_port}: {self._failure!r} "
                    "(hint: is the port taken? change web.port in config.yaml)"
                )
            if time.monotonic() > deadline:
                server.should_exit = True
                raise OSError(f"the web server did not start within {self._start_timeout:.0f} s")
            time.sleep(0.01)
        sockets = [s for srv in getattr(server, "servers", []) for s in srv.sockets]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self._server, self._thread = server, thread
        log.info("web server listening on http://%s:%d", self.host, self.port)
        return self

    def _run(self, server: uvicorn.Server) -> None:
        try:
            server.run()
        except BaseException as exc:  # uvicorn exits (SystemExit) when it cannot bind: report it in start()
            self._failure = exc
            log.error("web server stopped: %r", exc)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(2.0)
        self._server = self._thread = None
