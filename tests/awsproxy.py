"""A loopback proxy in front of moto server for the AWS query-protocol APIs (IAM, STS).

It forwards every request to moto, acting in one account for the base credentials
(moto's `x-moto-account-id` header: the function's own credentials belong to that
account; a session moto's STS AssumeRole gave out acts in its role's account, as moto
keys it by the access key), records the `Action` of each
call, and answers chosen calls itself, once each: an error (`Throttling`, `AccessDenied`)
or a success that is never forwarded (a write IAM "accepts" but that does not happen).
IAM's error shape: https://docs.aws.amazon.com/IAM/latest/APIReference/CommonErrors.html
"""

from __future__ import annotations

import http.client
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from loopback import LoopbackServer

IAM_NS = "https://iam.amazonaws.com/doc/2010-05-08/"


@dataclass(frozen=True)
class Answer:
    action: str
    status: int  # 200: a success without forwarding
    code: str = ""


class QueryProxy(LoopbackServer):
    """`with QueryProxy(moto.endpoint_url, "111122223333") as proxy:` … `proxy.url`."""

    def __init__(self, upstream: str, account: str, base_key: str = "testing") -> None:
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.account = account
        self.base_key = base_key
        self.calls: list[str] = []
        self._answers: deque[Answer] = deque()
        self._lock = threading.Lock()
        super().__init__(self._handler())

    def fail_next(self, action: str, code: str, status: int = 400) -> None:
        """Answer the next call of `action` with this IAM error instead of forwarding it."""
        with self._lock:
            self._answers.append(Answer(action, status, code))

    def swallow_next(self, action: str) -> None:
        """Answer the next call of `action` with success, without forwarding it."""
        with self._lock:
            self._answers.append(Answer(action, 200))

    def writes(self, actions: tuple[str, ...]) -> list[str]:
        """The recorded calls that are among `actions` (IAM action names, `iam:` optional)."""
        names = {a.split(":", 1)[-1] for a in actions}
        return [c for c in self.calls if c in names]

    def _take(self, action: str) -> Answer | None:
        with self._lock:
            for answer in self._answers:
                if answer.action == action:
                    self._answers.remove(answer)
                    return answer
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = parse_qs(body.decode()).get("Action", [""])[0]
                with proxy._lock:
                    proxy.calls.append(action)
                answer = proxy._take(action)
                if answer is not None:
                    self._answer(answer)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                signed_by = self.headers.get("Authorization", "")
                if f"Credential={proxy.base_key}/" in signed_by:
                    headers["x-moto-account-id"] = proxy.account
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                try:
                    conn.request("POST", self.path, body, headers)
                    response = conn.getresponse()
                    data = response.read()
                    self.send_response(response.status)
                    for key, value in response.getheaders():
                        if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                            self.send_header(key, value)
                finally:
                    conn.close()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _answer(self, answer: Answer) -> None:
                if answer.status == 200:
                    text = (
                        f'<{answer.action}Response xmlns="{IAM_NS}"><ResponseMetadata>'
                        f"<RequestId>proxy</RequestId></ResponseMetadata></{answer.action}Response>"
                    )
                else:
                    text = (
                        f'<ErrorResponse xmlns="{IAM_NS}"><Error><Type>Sender</Type>'
                        f"<Code>{answer.code}</Code><Message>{answer.code} (test proxy)</Message>"
                        "</Error><RequestId>proxy</RequestId></ErrorResponse>"
                    )
                data = text.encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
