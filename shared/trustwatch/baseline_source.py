"""Where the baseline lives (TRUSTWATCH_BASELINE), and a per-instance cache of it.

Locations:
- a local path, e.g. the baseline bundled with the function (read from its compiled
  form beside it when that matches, see `load_local_baseline`);
- a URL of a scheme some cloud reads, each in its folder's `source.py`:
  - `s3://bucket/key` (aws): boto3 with the function's role (AWS_ENDPOINT_URL etc. apply);
  - `gs://bucket/object` (gcp): google-cloud-storage with the function's service account
    (STORAGE_EMULATOR_HOST applies);
  - `https://<account>.blob.core.windows.net/<container>/<blob>` (azure):
    azure-storage-blob, with the URL's SAS query string if it has one, else
    DefaultAzureCredential (the managed identity). Plain `http://` only to a loopback
    host (Azurite): the baseline decides what is trusted, so it must not travel where it
    can be swapped.

Every failure (no such bucket or object, access denied, invalid YAML) is a BaselineError
naming the location, with any SAS token left out. Cloud SDKs are imported only for
their own scheme. Reads use each SDK's built-in retries: the cache keeps serving the last
good baseline while a refresh fails, so nothing here needs more.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from trustwatch import clouds
from trustwatch.baseline import Baseline, BaselineError, load_baseline, parse_baseline
from trustwatch.compiled import CompiledBaselineError, compiled_path, load_compiled

log = logging.getLogger("trustwatch.baseline")

TIMEOUT_S = 15  # per request: a hung read must not eat a function's whole time budget
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def display_location(location: str) -> str:
    """The location as it may appear in errors and logs: without a SAS token."""
    parsed = urlparse(location)
    if parsed.scheme in ("http", "https") and parsed.query:
        return f"{parsed.scheme}://{parsed.netloc}{parsed.path}?<SAS>"
    return location


def load_baseline_from(location: str, *, credential: Any = None) -> Baseline:
    """Read and validate the baseline at `location` (see the module doc): a path, or a URL
    whose scheme some cloud reads (`<cloud>/source.py`). `credential` goes to that reader
    (Azure Blob: default the URL's SAS, else DefaultAzureCredential)."""
    scheme = urlparse(location).scheme if "://" in location else ""
    if not scheme:
        return load_local_baseline(Path(location))
    shown = display_location(location)
    read = next(
        (r for c in clouds.registered() if (r := c.baseline_reader(scheme)) is not None), None
    )
    if read is None:
        known = ", ".join(f"{s}://" for c in clouds.registered() for s in c.baseline_schemes())
        raise BaselineError(shown, [f"unsupported location: expected a path or {known}"])
    try:
        data = read(location, credential)
    except BaselineError:
        raise
    except Exception as exc:
        raise BaselineError(shown, [f"cannot read: {_describe(exc)}"]) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BaselineError(shown, ["not UTF-8 text"]) from None
    return parse_baseline(text, shown)


def load_local_baseline(path: Path) -> Baseline:
    """The baseline file at `path`, from its compiled form beside it when that is the
    compiled form of this very file (`trustwatch.compiled`), else validated from the YAML.

    A compiled file that does not match is refused with a warning saying why, and the
    YAML is validated instead: a stale compiled form never decides what is trusted.
    """
    compiled = compiled_path(path)
    if not compiled.is_file():
        return load_baseline(path)
    try:
        source, data = path.read_bytes(), compiled.read_bytes()
    except OSError:
        return load_baseline(path)  # names the unreadable file, as without a compiled form
    try:
        return load_compiled(data, source, str(compiled))
    except CompiledBaselineError as exc:
        log.warning("compiled baseline refused, validating %s instead: %s", path, exc)
    return load_baseline(path)


def bucket_and_key(location: str) -> tuple[str, str]:
    """(bucket, object) of a `scheme://bucket/object` location (s3://, gs://)."""
    parsed = urlparse(location)
    key = parsed.path.lstrip("/")
    if not parsed.netloc or not key:
        raise BaselineError(location, [f"expected {parsed.scheme}://bucket/object"])
    return parsed.netloc, key


def _describe(exc: BaseException) -> str:
    """One line a user can act on, from any SDK's error."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:  # botocore ClientError
        code = response["Error"].get("Code", "")
        message = response["Error"].get("Message") or "request refused"
    elif getattr(exc, "error_code", None):  # azure-core; error_code may be an enum
        code = str(getattr(exc.error_code, "value", exc.error_code))  # type: ignore[attr-defined]
        message = str(getattr(exc, "reason", "") or "request refused")
    elif isinstance(getattr(exc, "code", None), int):  # google-api-core: an HTTP status
        code = f"HTTP {exc.code}"  # type: ignore[attr-defined]
        message = str(getattr(exc, "message", "") or "request refused")
    else:
        code, message = type(exc).__name__, str(exc) or "failed"
    if code in (
        "NoSuchBucket",
        "NoSuchKey",
        "404",
        "HTTP 404",
        "BlobNotFound",
        "ContainerNotFound",
    ):
        message = "no such bucket, container or object"
    return f"{code}: {message.strip().splitlines()[0]}"


@dataclass
class _Entry:
    baseline: Baseline
    loaded_at: float
    next_check: float


class BaselineCache:
    """The baseline of each location, kept by a warm function instance.

    Re-read after `ttl_s` seconds. If a refresh fails, the last good baseline keeps
    being served (a warning is logged) and the next attempt comes `retry_s` later; only
    a failed first load raises BaselineError, since there is nothing to fall back on.
    """

    def __init__(
        self,
        ttl_s: float = 300,
        *,
        retry_s: float = 30,
        clock: Callable[[], float] = time.monotonic,
        credential: Any = None,
    ) -> None:
        self.ttl_s = ttl_s
        self.retry_s = min(retry_s, ttl_s)
        self._clock = clock
        self._credential = credential
        self._entries: dict[str, _Entry] = {}
        # Invocations may run concurrently (Cloud Run, Azure): one read per refresh.
        self._lock = threading.Lock()

    def get(self, location: str) -> Baseline:
        with self._lock:
            now = self._clock()
            entry = self._entries.get(location)
            if entry is not None and now < entry.next_check:
                return entry.baseline
            try:
                baseline = load_baseline_from(location, credential=self._credential)
            except Exception as exc:
                if entry is None:
                    if isinstance(exc, BaselineError):
                        raise
                    shown = display_location(location)
                    raise BaselineError(shown, [f"cannot load: {_describe(exc)}"]) from exc
                entry.next_check = now + self.retry_s
                log.warning(
                    "baseline refresh failed, still using the one loaded %.0fs ago: %s",
                    now - entry.loaded_at,
                    exc,
                )
                return entry.baseline
            self._entries[location] = _Entry(baseline, now, now + self.ttl_s)
            return baseline
