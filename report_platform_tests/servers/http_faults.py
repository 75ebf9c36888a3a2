"""An HTTP proxy on 127.0.0.1 that answers with scripted errors before passing requests on.

Put it in front of moto to make "S3" answer 503 SlowDown, as real S3 does under load, without
touching the client. It also logs every request so tests can count PUTs.
"""

from __future__ import annotations

import http.client
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}

SLOW_DOWN = (
    503,
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>",
)


Rewrite = Callable[[str, str, int, list[tuple[str, str]], bytes], tuple[int, list[tuple[str, str]], bytes]]


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    answered: int


class FaultyHttpProxy:
    """Forward to `upstream` (e.g. moto's URL) unless a scripted fault is due."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._faults: deque[tuple[int, bytes]] = deque()
        self._rewrite: Rewrite | None = None
        self._lock = threading.Lock()
        self.requests: list[SeenRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail_next(self, count: int, status: int = SLOW_DOWN[0], body: bytes = SLOW_DOWN[1]) -> None:
        """Answer the next `count` requests with `status` and `body` instead of forwarding."""
        with self._lock:
            self._faults.extend([(status, body)] * count)

    def rewrite(self, hook: Rewrite | None) -> None:
        """Pass every upstream answer through `hook(method, path, status, headers, body)`, which
        returns the (status, headers, body) to send instead: a store that lies about what it holds."""
        self._rewrite = hook

    def clear_faults(self) -> None:
        """Forget the scripted faults not yet given: the store is reachable again."""
        with self._lock:
            self._faults.clear()

    def puts(self) -> list[SeenRequest]:
        """Requests that wrote object data (PUT object or upload part) and were forwarded."""
        with self._lock:
            return [r for r in self.requests if r.method == "PUT" and r.answered != 503]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP_HEADERS and name.lower() != "content-length":
                        self.send_header(name, value)
                if self.command == "HEAD":
                    # A HEAD answer describes the object it did not send.
                    length = dict((k.lower(), v) for k, v in headers).get("content-length", "0")
                    self.send_header("Content-Length", length)
                else:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self) -> None:
                body = self._body()
                with proxy._lock:
                    fault = proxy._faults.popleft() if proxy._faults else None
                if fault is not None:
                    with proxy._lock:
                        proxy.requests.append(SeenRequest(self.command, self.path, fault[0]))
                    self._reply(fault[0], [("Content-Type", "application/xml")], fault[1])
                    return
                upstream = http.client.HTTPConnection(*proxy._upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                    if body or self.command in ("PUT", "POST"):
                        headers["Content-Length"] = str(len(body))
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    with proxy._lock:
                        proxy.requests.append(SeenRequest(self.command, self.path, response.status))
                    status, answer_headers = response.status, response.getheaders()
                    if proxy._rewrite is not None:
                        status, answer_headers, data = proxy._rewrite(
                            self.command, self.path, status, answer_headers, data
                        )
                    self._reply(status, answer_headers, data)
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815

        return Handler

    def start(self) -> FaultyHttpProxy:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FaultyHttpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
