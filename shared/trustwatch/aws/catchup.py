"""Missed-event catch-up on AWS: CloudTrail `LookupEvents` over a sweep's time window.

LookupEvents takes one lookup attribute per call, returns at most 50 events a page
(`NextToken` for the next) and is limited to 2 requests per second per account and region
(https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_LookupEvents.html).
One call per watched event name (`trustwatch.aws.events.watched_operations()`), not per
event source: an event source's pages would also hold every read of that service (GetRole,
ListRoles, GetBucketAcl … are management events too), so a busy account would page
through thousands of reads to find a few writes, while a name returns only what the
events module turns into changes. A `RateLimiter` per region spaces the requests;
botocore's standard retries absorb a ThrottlingException that gets through anyway.

IAM is a global service: its events are logged in US East (N. Virginia) (us-gov-west-1 in
GovCloud), https://docs.aws.amazon.com/IAM/latest/UserGuide/cloudtrail-integration.html;
STS, S3 and Lambda events in the region of the endpoint called: those are looked up in each
region of `TRUSTWATCH_AWS_CATCH_UP_REGIONS` (comma-separated; default the session's region).
`TRUSTWATCH_AWS_LOOKUP_RATE` sets another pace (requests/s; lower it where other tools use the
same quota).

Each event's `CloudTrailEvent` is the JSON text of the CloudTrail record: the records are
yielded parsed, as `trustwatch.aws.events.parse` reads them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol

from trustwatch.aws.store import retry_config

LOOKUP_ACTION = "cloudtrail:LookupEvents"  # what deploy/aws grants for it
PAGE_SIZE = 50  # LookupEvents' largest MaxResults
log = logging.getLogger("trustwatch")
REQUESTS_PER_SECOND = 2.0
REGIONS = "TRUSTWATCH_AWS_CATCH_UP_REGIONS"
# requests/s per region: lower it when other tools share the account's LookupEvents quota
RATE = "TRUSTWATCH_AWS_LOOKUP_RATE"
IAM_SOURCE = "iam.amazonaws.com"


class Clock(Protocol):
    """Where the limiter reads the time and waits (time.monotonic/time.sleep by default)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait `seconds`."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        """time.monotonic()."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """time.sleep()."""
        time.sleep(seconds)


class RateLimiter:
    """At most `rate` requests a second: each `acquire` waits until its turn."""

    def __init__(self, rate: float = REQUESTS_PER_SECOND, clock: Clock | None = None) -> None:
        self.interval = 1.0 / rate
        self.clock = clock or SystemClock()
        self._next: float | None = None

    def acquire(self) -> None:
        """Wait until a request may go out, and take that turn."""
        now = self.clock.monotonic()
        if self._next is not None and now < self._next:
            self.clock.sleep(self._next - now)
            now = max(self.clock.monotonic(), self._next)
        self._next = now + self.interval


def lookup_rate(environ: Mapping[str, str]) -> float:
    """LookupEvents requests per second per region (TRUSTWATCH_AWS_LOOKUP_RATE, default 2)."""
    value = environ.get(RATE, "").strip()
    try:
        rate = float(value) if value else REQUESTS_PER_SECOND
    except ValueError:
        rate = 0.0
    if not rate > 0:
        raise ValueError(f"{RATE}={value!r} is not a positive number of requests per second")
    return rate


def global_region(region: str) -> str:
    """The region where a partition's global-service (IAM) events are logged."""
    if region.startswith("us-gov-"):
        return "us-gov-west-1"
    if region.startswith("cn-"):
        return "cn-north-1"
    return "us-east-1"


def lookup_records(
    session: Any,
    account: str,
    since: datetime,
    until: datetime,
    environ: Mapping[str, str],
    *,
    clock: Clock | None = None,
) -> Iterator[Any]:
    """The watched CloudTrail records of [since, until), each once, per region and name."""
    from trustwatch.aws.events import watched_operations

    rate = lookup_rate(environ)
    regions = [r.strip() for r in environ.get(REGIONS, "").split(",") if r.strip()]
    regions = regions or [session.region_name or "us-east-1"]
    wanted: dict[str, list[tuple[str, str]]] = {}  # region -> (event source, event name)
    for source, names in watched_operations().items():
        where = sorted({global_region(r) for r in regions}) if source == IAM_SOURCE else regions
        for region in where:
            wanted.setdefault(region, []).extend((source, name) for name in names)
    if until.tzinfo is None or since.tzinfo is None:
        raise ValueError("catch-up window times must be timezone-aware (UTC)")
    seen: set[str] = set()
    for region, lookups in wanted.items():
        client = session.client("cloudtrail", region_name=region, config=retry_config())
        limiter = RateLimiter(rate, clock=clock)  # the quota is per account and region
        for source, name in lookups:
            for record in _events(client, limiter, name, since, until):
                if not isinstance(record, dict):
                    yield record  # unreadable: the replay reports it
                    continue
                if record.get("eventSource") != source:
                    continue
                event_id = str(record.get("eventID") or "")
                if event_id and event_id in seen:
                    continue
                seen.add(event_id)
                yield record


def _events(
    client: Any, limiter: RateLimiter, name: str, since: datetime, until: datetime
) -> Iterator[Any]:
    """The records of one event name in [since, until), every page (an event whose
    CloudTrailEvent is no JSON object as its text)."""
    request: dict[str, Any] = {
        "LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": name}],
        "StartTime": since,
        "EndTime": until,
        "MaxResults": PAGE_SIZE,
    }
    while True:
        limiter.acquire()
        page = client.lookup_events(**request)
        for event in page.get("Events") or []:
            event_time = event.get("EventTime")
            if isinstance(event_time, datetime) and event_time >= until:
                continue  # LookupEvents' EndTime is inclusive; the window is not
            text = event.get("CloudTrailEvent")
            try:
                record = json.loads(text) if isinstance(text, str) else text
            except ValueError:
                record = None
            if isinstance(record, dict):
                yield record
            else:  # reported as a bad record by the replay it goes to, the others go on
                log.error(
                    "LookupEvents event %s: CloudTrailEvent is no JSON object", event.get("EventId")
                )
                yield text
        token = page.get("NextToken")
        if not token:
            return
        request["NextToken"] = token
