"""HTTP POST for the sinks (stdlib, kept-alive connections) and "is this worth a retry?"."""

from __future__ import annotations

import functools
import http.client
import os
import ssl
import sys
from collections.abc import Mapping
from types import ModuleType
from urllib.error import HTTPError, URLError
from urllib.parse import SplitResult, urlsplit

from trustwatch import __version__
from trustwatch.alerts.keepalive import Origin, exchange
from trustwatch.alerts.render import clean
from trustwatch.retry import RetryDecision, parse_retry_after

USER_AGENT = f"trustwatch/{__version__}"
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


class HTTPStatusError(Exception):
    """A non-2xx answer; `retry_after` is the server's Retry-After in seconds, if any."""

    def __init__(self, status: int, retry_after: float | None = None, detail: str = "") -> None:
        super().__init__(f"HTTP {status}" + (f": {detail}" if detail else ""))
        self.status = status
        self.retry_after = retry_after


def check_url(url: str) -> None:
    """HTTPS only, except to loopback (local receivers).

    Raises ValueError without the URL (it is a secret).
    """
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return
    raise ValueError("the URL must be https:// (http:// only to 127.0.0.1 / localhost)")


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> bytes:
    """POST `body`; returns the response body (first 64 kB).

    Over a kept-alive connection (`keepalive`), or through urllib when the environment
    names a proxy for the URL (HTTPS_PROXY / NO_PROXY, as urllib reads them). Redirects
    are never followed. Raises HTTPStatusError, or a connection or timeout error.
    """
    check_url(url)
    parts = urlsplit(url)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
    proxies = _proxies_for(parts)
    if proxies:
        return _post_via_urllib(url, body, headers, timeout, proxies)
    origin = Origin(
        parts.scheme, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    )
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    answer = exchange(origin, target, body, headers, timeout)
    if 200 <= answer.status < 300:
        return answer.body
    detail = clean(answer.body[:200].decode("utf-8", "replace"), 120)
    raise HTTPStatusError(answer.status, parse_retry_after(answer.retry_after), detail)


@functools.cache
def environment_proxies() -> dict[str, str]:
    """HTTPS_PROXY / HTTP_PROXY and the like, read once per process.

    As urllib's default opener read them, once, when it was built (reading the
    environment costs about 80 us, a quarter of a kept-alive post);
    `environment_proxies.cache_clear()` reads them again.
    """
    if sys.platform not in ("darwin", "win32") and not any(
        name[-6:].lower() == "_proxy" and value for name, value in os.environ.items()
    ):
        # what getproxies() reads on this platform says nothing: no need to import
        # urllib.request (a few ms of a cold start) to hear it
        return {}
    import urllib.request

    return urllib.request.getproxies()


def _proxies_for(parts: SplitResult) -> dict[str, str] | None:
    """The proxies if urllib would send this URL through one, else None.

    The same two questions urllib's ProxyHandler asks.
    """
    proxies = environment_proxies()
    if not proxies:
        return None
    import urllib.request

    if parts.scheme in proxies and not urllib.request.proxy_bypass(parts.netloc.rpartition("@")[2]):
        return proxies
    return None


def _post_via_urllib(
    url: str, body: bytes, headers: Mapping[str, str], timeout: float, proxies: dict[str, str]
) -> bytes:
    import urllib.request

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        # A webhook that redirects is misconfigured; following it would POST the alert
        # elsewhere.
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirects, urllib.request.ProxyHandler(proxies))
    request = urllib.request.Request(url, data=body, method="POST", headers=dict(headers))
    try:
        with opener.open(request, timeout=timeout) as response:
            data: bytes = response.read(65536)
            return data
    except HTTPError as err:
        detail = clean(err.read(200).decode("utf-8", "replace"), 120) if err.fp else ""
        retry_after = parse_retry_after(err.headers.get("Retry-After") if err.headers else None)
        raise HTTPStatusError(err.code, retry_after, detail) from None


def transient(exc: BaseException) -> RetryDecision:
    """Whether a failed send is worth another try (the sinks' one answer).

    Throttling, 5xx, timeouts, refused / dropped connections and SMTP 4xx are retried
    (Retry-After honoured); anything else is permanent.
    """
    if isinstance(exc, HTTPStatusError):
        if exc.status in RETRY_STATUS:
            return exc.retry_after if exc.retry_after is not None else True
        return None
    if isinstance(exc, URLError) and not isinstance(exc, HTTPError):
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            return None  # a wrong certificate stays wrong
        return True if isinstance(reason, OSError) else None  # DNS, refused, connect timeout
    smtp = _smtplib()
    if smtp is not None and isinstance(exc, smtp.SMTPResponseException):
        return True if 400 <= exc.smtp_code < 500 else None
    if smtp is not None and isinstance(exc, smtp.SMTPServerDisconnected | smtp.SMTPConnectError):
        return True
    if isinstance(exc, TimeoutError | ConnectionError | http.client.HTTPException):
        return True
    return None


def describe(exc: BaseException) -> str:
    """A one-line reason for a report or a log line.

    The error type and status, no URL (urllib puts it in some messages) and no response
    payloads beyond a short snippet.
    """
    if isinstance(exc, HTTPStatusError):
        return str(exc)
    if isinstance(exc, URLError):
        reason = exc.reason
        return f"{type(reason).__name__}: {clean(reason, 120)}" if reason else "URLError"
    smtp = _smtplib()
    if smtp is not None and isinstance(exc, smtp.SMTPResponseException):
        text = exc.smtp_error
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        return f"SMTP {exc.smtp_code}: {clean(text, 120)}"
    return f"{type(exc).__name__}: {clean(exc, 160)}" if str(exc) else type(exc).__name__


def _smtplib() -> ModuleType | None:
    """The smtplib module if loaded: an SMTP error exists only once the mail sink has it.

    The webhook and chat sinks never need it (~1 ms of a cold start to rule it out).
    """
    return sys.modules.get("smtplib")
