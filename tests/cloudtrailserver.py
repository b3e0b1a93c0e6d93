"""A loopback CloudTrail stand-in for `LookupEvents` (moto has none).

It speaks CloudTrail's JSON 1.1 protocol (POST, `X-Amz-Target:
com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents`, the shapes of
botocore's `cloudtrail/2013-11-01/service-2.json`) to the real boto3 client, and behaves
as https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_LookupEvents.html
says: at most one lookup attribute (`InvalidLookupAttributesException` otherwise),
`MaxResults` 1-50 (default 50), `StartTime`/`EndTime` both inclusive, the most recent
event first, `NextToken` while there are more. It holds CloudTrail records (as a trail
logs them) and serves each as an Event whose `CloudTrailEvent` is the record's JSON text.
`requests` records each request's target and body, `times` what `stamp()` read then.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from loopback import LoopbackServer

TARGET = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents"
_KEYS = {  # LookupAttributeKey -> what it matches in a record
    "EventId": lambda r: [r.get("eventID")],
    "EventName": lambda r: [r.get("eventName")],
    "EventSource": lambda r: [r.get("eventSource")],
    "ReadOnly": lambda r: [str(bool(r.get("readOnly"))).lower()],
    "Username": lambda r: [(r.get("userIdentity") or {}).get("userName")],
}


def _epoch(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


class CloudTrailServer(LoopbackServer):
    """`with CloudTrailServer(records) as ct:` … boto3 client with `endpoint_url=ct.url`."""

    def __init__(
        self, records: Iterable[dict[str, Any]] = (), *, stamp: Callable[[], float] | None = None
    ) -> None:
        self.records = list(records)
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.stamp = stamp  # read at each request: the times a test's fake clock showed
        self.times: list[float] = []
        self._lock = threading.Lock()
        super().__init__(self._handler())

    def lookups(self) -> list[dict[str, Any]]:
        """The LookupEvents request bodies, in order."""
        return [body for target, body in self.requests if target == TARGET]

    def answer(self, target: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) for one request."""
        with self._lock:
            self.requests.append((target, body))
            if self.stamp is not None:
                self.times.append(self.stamp())
        if target != TARGET:
            return 400, {"__type": "UnknownOperationException", "message": target}
        attributes = body.get("LookupAttributes") or []
        if len(attributes) > 1:
            return 400, {
                "__type": "InvalidLookupAttributesException",
                "message": "You cannot specify more than one lookup attribute.",
            }
        limit = body.get("MaxResults", 50)
        if not isinstance(limit, int) or not 1 <= limit <= 50:
            return 400, {"__type": "InvalidMaxResultsException", "message": str(limit)}
        start, end = body.get("StartTime"), body.get("EndTime")
        if start is not None and end is not None and start > end:
            return 400, {"__type": "InvalidTimeRangeException", "message": "start after end"}
        matching = [r for r in self.records if self._matches(r, attributes, start, end)]
        matching.sort(key=lambda r: _epoch(r["eventTime"]), reverse=True)
        offset = int(body.get("NextToken") or 0)
        page = matching[offset : offset + limit]
        answer: dict[str, Any] = {"Events": [self._event(r) for r in page]}
        if offset + limit < len(matching):
            answer["NextToken"] = str(offset + limit)
        return 200, answer

    @staticmethod
    def _matches(
        record: dict[str, Any], attributes: list[dict[str, str]], start: Any, end: Any
    ) -> bool:
        when = _epoch(record["eventTime"])
        if (start is not None and when < start) or (end is not None and when > end):
            return False
        for attribute in attributes:
            values = _KEYS[attribute["AttributeKey"]](record)
            if attribute["AttributeValue"] not in values:
                return False
        return True

    @staticmethod
    def _event(record: dict[str, Any]) -> dict[str, Any]:
        identity = record.get("userIdentity") or {}
        return {
            "EventId": record.get("eventID"),
            "EventName": record.get("eventName"),
            "ReadOnly": str(bool(record.get("readOnly"))).lower(),
            "EventTime": _epoch(record["eventTime"]),
            "EventSource": record.get("eventSource"),
            "Username": identity.get("userName") or identity.get("arn", "").rsplit("/", 1)[-1],
            "Resources": [],
            "CloudTrailEvent": json.dumps(record),
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                status, answer = server.answer(self.headers.get("X-Amz-Target", ""), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler
