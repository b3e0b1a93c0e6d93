"""The alert transport's kept-alive connections on loopback: reused, dropped when they
must be, the same outcomes as the one-connection-per-post urllib path had.

HTTP/1.1 connections persist unless a side says `Connection: close` (or speaks HTTP/1.0),
and a server may close an idle one at any time, so a client must be ready to find it
closed (RFC 9112 section 9.3 and 9.5: https://www.rfc-editor.org/rfc/rfc9112#section-9.3,
https://www.rfc-editor.org/rfc/rfc9112#section-9.5). A POST is sent again only when the
connection ended before any byte of an answer (RFC 9112 section 9.3.1, "some means to
detect that the original request was never applied"); the webhook's X-Trustwatch-Delivery
id stays the same, so a receiver can tell a repeat either way. http.client raises
RemoteDisconnected for "closed without response"
(https://docs.python.org/3/library/http.client.html#http.client.RemoteDisconnected);
proxies are the environment's, as urllib reads them
(https://docs.python.org/3/library/urllib.request.html#urllib.request.getproxies).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.error import URLError

import pytest
from awsstate import ForwardProxy
from trustwatch.alerts import keepalive
from trustwatch.alerts.receivers import RecordingHTTPServer, Reply, closed_port, self_signed_tls
from trustwatch.alerts.transport import (
    HTTPStatusError,
    describe,
    environment_proxies,
    post,
    transient,
)

PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def no_proxy_and_fresh_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    environment_proxies.cache_clear()
    keepalive.close_idle()
    yield
    keepalive.close_idle()
    environment_proxies.cache_clear()


@pytest.fixture
def server() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer() as srv:
        yield srv


def send(url: str, n: int, timeout: float = 5.0) -> list[bytes]:
    return [post(url, json.dumps({"n": i}).encode(), {}, timeout) for i in range(n)]


def numbers(srv: RecordingHTTPServer) -> list[int]:
    return [r.json()["n"] for r in srv.requests]


def test_posts_to_one_host_share_one_connection(server: RecordingHTTPServer) -> None:
    assert send(server.url + "/hook?x=1", 5) == [b"ok"] * 5
    assert numbers(server) == [0, 1, 2, 3, 4]
    assert server.connections == 1
    assert {r.path for r in server.requests} == {"/hook?x=1"}
    assert server.requests[0].headers["Content-Type"] == "application/json"
    assert server.requests[0].headers["User-Agent"].startswith("trustwatch/")


def test_a_server_closing_idle_connections_gets_each_post_once() -> None:
    # it answers, then hangs up without saying so (a keep-alive timeout of zero)
    with RecordingHTTPServer(Reply(200, b"ok", hang_up=True)) as srv:
        assert send(srv.url, 4) == [b"ok"] * 4
        assert numbers(srv) == [0, 1, 2, 3]  # answered ones are never sent again
        assert srv.connections == 4


def test_a_kept_connection_closed_before_answering_is_sent_once_more(
    server: RecordingHTTPServer,
) -> None:
    send(server.url, 1)
    server.reply(Reply(unanswered=True))  # closes as the next request arrives
    assert send(server.url, 1) == [b"ok"]
    assert numbers(server) == [0, 0, 0]  # the first post, the unanswered one, its resend
    assert server.connections == 2


def test_a_new_connection_closed_before_answering_is_left_to_the_retry_policy(
    server: RecordingHTTPServer,
) -> None:
    server.reply(Reply(unanswered=True))
    with pytest.raises(ConnectionError) as caught:
        send(server.url, 1)
    assert type(caught.value).__name__ == "RemoteDisconnected"
    assert transient(caught.value) is True
    assert len(server.requests) == 1  # not sent again here


def test_connection_close_opens_a_new_connection_next_time() -> None:
    with RecordingHTTPServer(Reply(200, b"ok", {"Connection": "close"})) as srv:
        assert send(srv.url, 3) == [b"ok"] * 3
        assert numbers(srv) == [0, 1, 2] and srv.connections == 3


def test_error_statuses_as_before_and_the_connection_carries_on(
    server: RecordingHTTPServer,
) -> None:
    server.reply(Reply(500, b"internal trouble"), Reply(429, b"", {"Retry-After": "7"}))
    with pytest.raises(HTTPStatusError) as first:
        send(server.url, 1)
    assert (first.value.status, str(first.value)) == (500, "HTTP 500: internal trouble")
    assert transient(first.value) is True
    with pytest.raises(HTTPStatusError) as second:
        send(server.url, 1)
    assert second.value.status == 429 and transient(second.value) == 7.0
    assert send(server.url, 1) == [b"ok"]
    assert server.connections == 1


def test_a_redirect_is_not_followed(server: RecordingHTTPServer) -> None:
    with RecordingHTTPServer() as elsewhere:
        server.reply(Reply(302, b"", {"Location": elsewhere.url + "/stolen"}))
        with pytest.raises(HTTPStatusError) as caught:
            send(server.url, 1)
        assert caught.value.status == 302 and transient(caught.value) is None
        assert not elsewhere.requests


def test_a_large_body_is_read_whole_and_returned_cut(server: RecordingHTTPServer) -> None:
    server.reply(Reply(200, b"x" * 200_000))
    (first,) = send(server.url, 1)
    assert first == b"x" * 65536
    assert send(server.url, 1) == [b"ok"] and server.connections == 1


def test_a_hanging_server_times_out_and_the_next_post_starts_fresh(
    server: RecordingHTTPServer,
) -> None:
    send(server.url, 1)
    server.reply(Reply(delay=30))
    with pytest.raises(TimeoutError) as caught:
        send(server.url, 1, timeout=0.3)
    assert transient(caught.value) is True and "timed out" in describe(caught.value)
    assert send(server.url, 1) == [b"ok"]
    assert server.connections == 2


def test_a_refused_port_is_a_transient_urlerror() -> None:
    with pytest.raises(URLError) as caught:
        post(f"http://127.0.0.1:{closed_port()}/hook", b"{}", {}, 2)
    assert isinstance(caught.value.reason, ConnectionRefusedError)
    assert transient(caught.value) is True
    assert describe(caught.value).startswith("ConnectionRefusedError: ")


def test_threads_posting_at_once_each_arrive_whole(server: RecordingHTTPServer) -> None:
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for i in range(10):
                body = json.dumps({"n": index * 100 + i, "pad": "p" * 5000}).encode()
                assert post(server.url, body, {}, 5) == b"ok"
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    expected = {k * 100 + i for k in range(6) for i in range(10)}
    assert sorted(numbers(server)) == sorted(expected)  # each once, each body whole
    assert all(r.json()["pad"] == "p" * 5000 for r in server.requests)
    assert server.connections <= 6  # never more than one per thread at a time


@pytest.fixture(scope="module")
def tls() -> Iterator[tuple[ssl.SSLContext, str]]:
    context, cafile, cleanup = self_signed_tls("localhost")
    yield context, cafile
    cleanup()


def test_tls_is_verified_and_reused(
    tls: tuple[ssl.SSLContext, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    context, cafile = tls
    # SSL_CERT_FILE: OpenSSL's default CA file, read by ssl.create_default_context()
    # (https://docs.python.org/3/library/ssl.html#ssl.get_default_verify_paths)
    monkeypatch.setenv("SSL_CERT_FILE", cafile)
    with RecordingHTTPServer(tls_context=context) as srv:
        assert srv.url.startswith("https://localhost:")
        assert send(srv.url + "/hook", 3) == [b"ok"] * 3
        assert numbers(srv) == [0, 1, 2] and srv.connections == 1


def test_an_untrusted_certificate_fails_for_good(tls: tuple[ssl.SSLContext, str]) -> None:
    context, _ = tls
    with RecordingHTTPServer(tls_context=context) as srv:
        with pytest.raises(URLError) as caught:
            send(srv.url + "/hook", 1)
        assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)
        assert transient(caught.value) is None
        assert not srv.requests


def test_a_proxy_in_the_environment_is_used(
    server: RecordingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ForwardProxy(server.url) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        environment_proxies.cache_clear()  # read once per process, as urllib's opener did
        assert send(server.url + "/hook", 2) == [b"ok"] * 2
        assert proxy.hosts == ["127.0.0.1", "127.0.0.1"]
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        environment_proxies.cache_clear()
        assert send(server.url + "/hook", 1) == [b"ok"]
        assert len(proxy.hosts) == 2  # bypassed: straight to the server
    assert numbers(server) == [0, 1, 0]


# --- the response head, read without http.client's email parser (keepalive._Response) ---
# HTTP/1.1 message syntax: RFC 9112 (https://www.rfc-editor.org/rfc/rfc9112): a body's
# length (section 6.3: chunked wins over Content-Length, no length means read to the
# close), obsolete line folding (section 5.2), interim 1xx answers (RFC 9110 section 15.2).


class CannedServer:
    """A raw TCP server answering each request with the next canned bytes, on one
    connection after another; `connections` counts those accepted."""

    def __init__(self, *answers: bytes, close_after: bool = False) -> None:
        self.answers = list(answers)
        self.close_after = close_after
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> CannedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        self.thread.join(5)

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn, conn.makefile("rb") as reader:
                while self.answers:
                    if not self._read_request(reader):
                        break
                    conn.sendall(self.answers.pop(0))
                    if self.close_after:
                        break

    @staticmethod
    def _read_request(reader: BinaryIO) -> bool:
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return bool(reader.read(length)) or length == 0


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", b"ok"),  # names: any case
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n1\r\n!\r\n0\r\n\r\n",
            b"ok!",
        ),
        # chunked wins over a Content-Length (RFC 9112 section 6.3, item 3)
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            b"ok",
        ),
        (
            b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"ok",
        ),
        (b"HTTP/1.1 200 OK\r\nnot a header line\r\nContent-Length: 2\r\n\r\nok", b"ok"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    ],
)
def test_a_kept_alive_answer_is_read_whole_and_the_connection_reused(
    answer: bytes, body: bytes
) -> None:
    with CannedServer(answer, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext") as srv:
        assert send(srv.url, 2) == [body, b"next"]
        assert srv.connections == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",  # 1.0 without keep-alive
        b"HTTP/1.1 200 OK\r\n\r\nok",  # no length: the body ends at the close
    ],
)
def test_an_answer_that_ends_its_connection_gets_a_new_one_next(answer: bytes) -> None:
    with CannedServer(answer, answer, close_after=True) as srv:
        assert send(srv.url, 2) == [b"ok", b"ok"]
        assert srv.connections == 2


def test_a_folded_retry_after_is_read() -> None:
    throttled = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After:\r\n 7\r\nContent-Length: 0\r\n\r\n"
    with CannedServer(throttled) as srv, pytest.raises(HTTPStatusError) as caught:
        send(srv.url, 1)
    assert caught.value.status == 429 and caught.value.retry_after == 7


@pytest.mark.parametrize(
    ("head", "error"),
    [
        (b"".join(b"X-%d: y\r\n" % i for i in range(101)), "got more than 100 headers"),
        (b"X-Long: " + b"y" * 70_000 + b"\r\n", "header line"),
    ],
)
def test_an_oversized_head_is_an_error_as_http_client_makes_it(head: bytes, error: str) -> None:
    answer = b"HTTP/1.1 200 OK\r\n" + head + b"\r\n"
    with CannedServer(answer) as srv, pytest.raises(http.client.HTTPException, match=error):
        send(srv.url, 1)


class RecordedWrites(keepalive._Connection):
    """A connection that records what it would write instead of writing it."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1", 9)
        self.writes: list[bytes] = []

    def send(self, data: object) -> None:
        self.writes.append(bytes(data) if isinstance(data, bytes | bytearray) else b"<iter>")


def test_the_head_and_a_bytes_body_leave_in_one_write() -> None:
    conn = RecordedWrites()
    conn.request("POST", "/hook", b'{"n": 1}', {"Content-Type": "application/json"})
    (write,) = conn.writes
    head, _, body = write.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /hook HTTP/1.1\r\n") and b"Content-Length: 8" in head
    assert body == b'{"n": 1}'


def test_a_streamed_body_goes_http_clients_way() -> None:
    conn = RecordedWrites()
    conn.request(
        "POST", "/hook", iter([b"a", b"b"]), {"Transfer-Encoding": "chunked"}, encode_chunked=True
    )
    assert conn.writes[0].endswith(b"\r\n\r\n") and len(conn.writes) > 1


def test_without_proxy_variables_urllib_request_is_never_imported(
    server: RecordingHTTPServer,
) -> None:
    """On Linux urllib reads proxies from the environment alone (`*_proxy` variables:
    https://docs.python.org/3/library/urllib.request.html#urllib.request.getproxies), so
    with none set a post needs no urllib.request (a few ms of a function's cold start)."""
    code = (
        "import sys; from trustwatch.alerts.transport import post; "
        f"assert post({server.url!r}, b'{{}}', {{}}, 5) == b'ok'; "
        "print('urllib.request' in sys.modules)"
    )
    env = {"PYTHONPATH": str(Path(keepalive.__file__).parents[2]), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
    assert len(server.requests) == 1
