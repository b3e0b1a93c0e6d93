"""One loopback HTTP server on a free port, run in a thread: the base of the tests'
stand-ins that speak a cloud's protocol (tests/iamserver.py, tests/cloudtrailserver.py,
tests/awsproxy.py, tests/awsstate.py's forward proxy).

Use as a context manager: entering starts serving, leaving shuts down, closes the socket
and joins the thread, so no test leaves a server behind.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class LoopbackServer:
    """`handler` answers the requests of a ThreadingHTTPServer on 127.0.0.1, port 0."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        # a short poll: shutdown() waits for the loop to look
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
