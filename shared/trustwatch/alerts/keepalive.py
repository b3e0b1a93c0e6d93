"""Kept-alive HTTP(S) connections for the alert posts, per process and thread-safe.

A warm function instance posts every alert to the same few hosts; a connection per post
paid a TCP (and in production a TLS) handshake each time. Idle connections wait here,
a few per (scheme, host, port); a post takes one (or opens one) for itself, so threads
never share a connection. Errors are raised as urllib's do_open raises them (connect and
send errors wrapped in URLError, the rest as they come), so `transport.transient` and
`describe` judge them as they judged urllib's.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import ssl
import threading
from collections.abc import Mapping
from typing import Any, BinaryIO
from urllib.error import URLError

from trustwatch.frozen import frozen

MAX_IDLE_PER_ORIGIN = 4
BODY_LIMIT = 65536  # what a post returns of a response body
DRAIN_LIMIT = 1 << 20  # more left unread than this: close rather than read it all


@frozen
class Origin:
    """Where a connection goes; connections are kept per origin."""

    scheme: str  # "https" or "http"
    host: str
    port: int


@frozen
class Answer:
    """A response, read: its status, the first BODY_LIMIT bytes, its Retry-After."""

    status: int
    body: bytes
    retry_after: str | None


class _Unanswered(Exception):
    """Failed before any byte of an answer; `error` is what urllib would have raised."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _Response(http.client.HTTPResponse):
    """http.client's response, its headers read without the email parser.

    `HTTPResponse.begin` hands the header block to `email.parser` (a MIME parser), which
    cost a warm post more CPU than the rest of the exchange. This `begin` sets what the
    stdlib's sets (status, version, headers, chunked, length, will_close: what `read`
    and `_check_close` go by), with the same limits on header lines, so `read()` and
    everything after it are http.client's own.
    """

    def begin(self) -> None:
        if self.headers is not None:
            return
        # One read before the status line tells "closed before answering" (safe to send
        # again) from a failure after the server said something (never sent again).
        try:
            first = self.fp.peek(1)
        except ConnectionResetError as exc:
            raise _Unanswered(exc) from exc
        if not first:
            raise _Unanswered(
                http.client.RemoteDisconnected("Remote end closed connection without response")
            )
        while True:  # interim 1xx answers (100 Continue) have headers and no body
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            _read_headers(self.fp)
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = _read_headers(self.fp)
        encoding = self.headers.get("transfer-encoding")
        self.chunked = bool(encoding and encoding.lower() == "chunked")
        self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:  # RFC 9112 6.3: chunked wins over a length
            with contextlib.suppress(ValueError):
                self.length = int(length)
            if self.length is not None and self.length < 0:
                self.length = None  # nonsense: read to the close
        if status in (204, 304) or 100 <= status < 200 or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True  # the body ends when the server closes


MAX_HEADER_LINE = 65536  # http.client's limits (_MAXLINE, _MAXHEADERS)
MAX_HEADERS = 100


def _read_headers(fp: BinaryIO) -> http.client.HTTPMessage:
    """The header block up to its blank line, as `http.client.parse_headers` returns it.

    A folded line (obsolete line folding, RFC 9112 section 5.2) continues the header
    before it; a line that is no header (no colon) is skipped.
    """
    fields: list[list[str]] = []
    for _ in range(MAX_HEADERS + 1):
        line = fp.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            message = http.client.HTTPMessage()
            for name, value in fields:
                message[name] = value
            return message
        text = line.decode("iso-8859-1")
        if text[0] in " \t":
            if fields:
                fields[-1][1] = f"{fields[-1][1]} {text.strip()}"
            continue
        name, colon, value = text.partition(":")
        if colon:
            fields.append([name.strip(), value.strip()])
    raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")


_LOCK = threading.Lock()
_IDLE: dict[Origin, list[http.client.HTTPConnection]] = {}


def exchange(
    origin: Origin, target: str, body: bytes, headers: Mapping[str, str], timeout: float
) -> Answer:
    """POST `body` to `target` on `origin` over a kept-alive connection.

    A kept connection the server closed while it was idle (keep-alive timeout) is sent
    on once more, on a fresh connection, when it failed before any byte of an answer.
    """
    conn, reused = _checkout(origin, timeout)
    try:
        return _post_on(conn, origin, target, body, headers)
    except _Unanswered as unanswered:
        if not (reused and _closed_while_idle(unanswered.error)):
            raise unanswered.error from None
    conn = _connect(origin, timeout)
    try:
        return _post_on(conn, origin, target, body, headers)
    except _Unanswered as unanswered:
        raise unanswered.error from None


def close_idle() -> None:
    """Close every kept connection (the next posts start fresh)."""
    with _LOCK:
        idle = [conn for conns in _IDLE.values() for conn in conns]
        _IDLE.clear()
    for conn in idle:
        conn.close()


def _post_on(
    conn: http.client.HTTPConnection,
    origin: Origin,
    target: str,
    body: bytes,
    headers: Mapping[str, str],
) -> Answer:
    """One exchange; the connection goes back to the pool only if it can carry another."""
    try:
        try:
            conn.request("POST", target, body, dict(headers))
        except OSError as exc:  # connect, TLS handshake, send: as urllib's do_open
            raise _Unanswered(URLError(exc)) from exc
        response = conn.getresponse()
        data = response.read(BODY_LIMIT)
        answer = Answer(response.status, data, response.getheader("Retry-After"))
        reusable = not response.will_close and _drain(response)
    except BaseException:
        conn.close()
        raise
    if reusable:
        _checkin(origin, conn)
    else:
        conn.close()
    return answer


def _drain(response: http.client.HTTPResponse) -> bool:
    """Read the rest of the body, so the connection can carry the next request."""
    left = DRAIN_LIMIT
    while not response.isclosed():
        chunk = response.read(min(left, BODY_LIMIT))
        left -= len(chunk)
        if not chunk or left <= 0:
            return response.isclosed()
    return True


def _closed_while_idle(error: BaseException) -> bool:
    reason = error.reason if isinstance(error, URLError) else error
    return isinstance(reason, BrokenPipeError | ConnectionResetError)  # RemoteDisconnected too


def _checkout(origin: Origin, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
    """A kept connection still open (True), else a new one, not yet connected (False)."""
    while True:
        with _LOCK:
            idle = _IDLE.get(origin)
            conn = idle.pop() if idle else None
        if conn is None:
            return _connect(origin, timeout), False
        if conn.sock is not None and not _readable(conn.sock):
            if conn.timeout != timeout:  # each settimeout is a system call
                conn.timeout = timeout
                conn.sock.settimeout(timeout)
            return conn, True
        conn.close()  # closed by the server (or stray bytes): never send on it


def _checkin(origin: Origin, conn: http.client.HTTPConnection) -> None:
    with _LOCK:
        idle = _IDLE.setdefault(origin, [])
        if len(idle) < MAX_IDLE_PER_ORIGIN:
            idle.append(conn)
            return
    conn.close()


def _readable(sock: socket.socket) -> bool:
    """An idle kept connection has nothing to read: readable means EOF, a reset or junk."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])


def _connect(origin: Origin, timeout: float) -> http.client.HTTPConnection:
    conn: http.client.HTTPConnection
    if origin.scheme == "https":
        # What urllib used: the default context, verified, SSL_CERT_FILE / SSL_CERT_DIR
        # read when it is made; ALPN as http.client sets it for its own default context.
        context = ssl.create_default_context()
        context.set_alpn_protocols(["http/1.1"])
        conn = _TLSConnection(origin.host, origin.port, timeout=timeout, context=context)
    else:
        conn = _Connection(origin.host, origin.port, timeout=timeout)
    conn.response_class = _Response
    return conn


def _send_output(
    conn: http.client.HTTPConnection, message_body: Any = None, encode_chunked: bool = False
) -> None:
    """A request's head and a bytes body in one write, as one segment (one TLS record).

    http.client writes them apart: the receiver reads (and, over loopback, the kernel
    delivers) twice. Any other body goes http.client's way.
    """
    if isinstance(message_body, bytes) and not encode_chunked:
        conn._buffer.extend((b"", message_body))  # type: ignore[attr-defined]
        message = b"\r\n".join(conn._buffer)  # type: ignore[attr-defined]
        del conn._buffer[:]  # type: ignore[attr-defined]
        conn.send(message)
    else:
        http.client.HTTPConnection._send_output(conn, message_body, encode_chunked)  # type: ignore[attr-defined]


class _Connection(http.client.HTTPConnection):
    _send_output = _send_output


class _TLSConnection(http.client.HTTPSConnection):
    _send_output = _send_output
