"""Real local receivers on loopback for the tests and `trustwatch demo`.

An HTTP server that records Slack / Teams / webhook posts (and answers as told: status,
headers, delay), and an SMTP server (aiosmtpd) that records mail. Both bind 127.0.0.1 on
a free port.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from trustwatch.frozen import frozen


@frozen
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body, parsed as JSON."""
        return json.loads(self.body)


@frozen
class Reply:
    """How the server answers one request (fault injection: status, headers, a delay)."""

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering; cut short when the server closes
    hang_up: bool = False  # close the connection after answering, without saying so
    unanswered: bool = False  # read the request, close the connection without a reply


class RecordingHTTPServer:
    """`with RecordingHTTPServer() as srv:` … `srv.url`, `srv.requests`.

    `srv.reply(Reply(500), Reply(429, headers={"Retry-After": "1"}))` queues answers for
    the next requests; after them, `srv.default` answers. HTTP/1.1 with keep-alive;
    `srv.connections` counts the connections accepted. `tls_context` (a server context,
    `self_signed_tls`) serves HTTPS at `https://localhost:<port>`.
    """

    def __init__(
        self, default: Reply | None = None, *, tls_context: ssl.SSLContext | None = None
    ) -> None:
        self.default = default or Reply()
        self.requests: list[RecordedRequest] = []
        self.connections = 0
        self._queued: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._open: set[socket.socket] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._tls = tls_context is not None
        if tls_context is not None:
            self._server.socket = tls_context.wrap_socket(self._server.socket, server_side=True)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The loopback port the server listens on."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>` (`https://localhost:<port>` with TLS)."""
        if self._tls:
            return f"https://localhost:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    def reply(self, *replies: Reply) -> None:
        """Queue answers for the next requests, in order."""
        with self._lock:
            self._queued.extend(replies)

    def _next(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            return self._queued.popleft() if self._queued else self.default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # buffered: the status line, headers and body leave in one write (two small
            # writes on a kept-alive connection meet Nagle and delayed ACKs: ~40 ms stalls)
            wbufsize = -1

            def setup(self) -> None:
                super().setup()
                with owner._lock:
                    owner.connections += 1
                    owner._open.add(self.connection)

            def finish(self) -> None:
                with owner._lock:
                    owner._open.discard(self.connection)
                super().finish()

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorded = RecordedRequest(
                    self.command, self.path, {k: v for k, v in self.headers.items()}, body
                )
                answer = owner._next(recorded)
                if answer.unanswered or (answer.delay and owner._closing.wait(answer.delay)):
                    self.close_connection = True
                    return  # drop the connection unanswered
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)
                if answer.hang_up:
                    self.close_connection = True

            do_POST = do_GET = do_PUT = _handle

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test and demo output clean

        return Handler

    def start(self) -> RecordingHTTPServer:
        """Start serving in a background thread."""
        # A short poll interval: shutdown() waits for it (tests start many servers).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        self._closing.set()
        if self._thread:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
        with self._lock:  # kept-alive connections too: a client sees them end
            for conn in self._open:
                with contextlib.suppress(OSError):  # already gone
                    conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> RecordingHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def closed_port() -> int:
    """A loopback port nobody listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@frozen
class RecordedMail:
    """One mail the server accepted: envelope and raw message."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        """The raw message, parsed."""
        return BytesParser(policy=policy.default).parsebytes(self.raw)


class RecordingSMTPServer:
    """aiosmtpd on 127.0.0.1; `srv.messages` holds what it accepted.

    `tls_context` offers STARTTLS (and requires it), `implicit_tls` wraps the socket
    (smtps), `credentials=(user, password)` requires AUTH, `data_reply` overrides the
    answer to DATA (e.g. "451 4.3.0 try again later") for as many messages as queued.
    """

    def __init__(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.messages: list[RecordedMail] = []
        self.data_replies: deque[str] = deque()
        self.logins: list[str] = []
        self._tls_context = tls_context
        self._implicit = implicit_tls
        self._credentials = credentials
        self.port = closed_port()
        self._controller: Any = None

    @property
    def url(self) -> str:
        """An SMTP URL for this server (the test CA still has to be trusted: `cafile`)."""
        auth = ":".join(self._credentials) + "@" if self._credentials else ""
        if self._implicit:
            return f"smtps://{auth}localhost:{self.port}"
        if self._tls_context:
            return f"smtp://{auth}localhost:{self.port}"
        return f"smtp://{auth}127.0.0.1:{self.port}?starttls=false"

    def start(self) -> RecordingSMTPServer:
        """Start serving in a background thread."""
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        owner = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                if owner.data_replies:
                    return owner.data_replies.popleft()
                owner.messages.append(
                    RecordedMail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
                )
                return "250 Message accepted for delivery"

        def authenticate(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> Any:
            login = data.login.decode() if isinstance(data.login, bytes) else str(data.login)
            password = data.password
            password = password.decode() if isinstance(password, bytes) else str(password)
            owner.logins.append(login)
            ok = (login, password) == owner._credentials
            return AuthResult(success=ok, handled=False)  # unhandled failure: 535

        kwargs: dict[str, Any] = {"hostname": "127.0.0.1", "port": self.port}
        if self._implicit:
            kwargs["ssl_context"] = self._tls_context
        elif self._tls_context:
            kwargs.update(tls_context=self._tls_context, require_starttls=True)
        if self._credentials:
            kwargs.update(authenticator=authenticate, auth_require_tls=bool(self._tls_context))
        else:
            kwargs["auth_require_tls"] = False
        self._controller = Controller(Handler(), **kwargs)
        self._controller.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> RecordingSMTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def self_signed_tls(hostname: str = "localhost") -> tuple[ssl.SSLContext, str, Callable[[], None]]:
    """A server TLS context with a fresh self-signed certificate for `hostname`.

    Returns the context, the path of that certificate (a client's `cafile`) and a
    cleanup function. Needs `cryptography` (present wherever the Azure or AWS extras are
    installed).
    """
    import datetime
    import ipaddress
    import os
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tempfile.mkdtemp(prefix="trustwatch-tls-")
    cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)

    def cleanup() -> None:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)

    return context, cert_path, cleanup
