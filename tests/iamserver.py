"""A loopback IAM stand-in that pages GetAccountAuthorizationDetails as IAM may.

moto answers GetAccountAuthorizationDetails in one page whatever `MaxItems` says, so
paging is tested here: the server speaks IAM's query protocol (form-encoded POST, XML
answer, https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetAccountAuthorizationDetails.html)
to the real boto3 client and answers pages of the sizes it is given, each at most
`MaxItems`: a page shorter than `MaxItems` with `IsTruncated` true is what IAM "might
return ... even when there are more results available", and callers must follow
`IsTruncated`. Documents go out URL-encoded, as IAM sends them (botocore decodes them).

Also `GetInstanceProfile` (NoSuchEntity for a name it does not hold). The benchmark's
10,000-role account (benchmarks/run.py) is this server too.
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, quote
from xml.sax.saxutils import escape

from loopback import LoopbackServer

NS = "https://iam.amazonaws.com/doc/2010-05-08/"
DOCUMENT_KEYS = ("AssumeRolePolicyDocument", "PolicyDocument", "Document")


def _xml(value: Any, key: str = "") -> str:
    """A value as the query protocol's XML: lists as <member>, structures as elements."""
    if key in DOCUMENT_KEYS and not isinstance(value, str):
        return quote(json.dumps(value))  # IAM sends documents URL-encoded
    if isinstance(value, dict):
        return "".join(f"<{k}>{_xml(v, k)}</{k}>" for k, v in value.items() if v is not None)
    if isinstance(value, list):
        return "".join(f"<member>{_xml(v)}</member>" for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


class IamPagingServer(LoopbackServer):
    """`with IamPagingServer(roles, policies, page_sizes=[3, 1, 5]) as iam:` … `iam.url`.

    `roles` / `policies` are RoleDetailList / Policies items (documents as dicts);
    `page_sizes` cycle (each capped at the request's MaxItems). `requests` records each
    GetAccountAuthorizationDetails request's parameters; `calls` counts every request.
    """

    def __init__(
        self,
        roles: list[dict[str, Any]],
        policies: Iterable[dict[str, Any]] = (),
        *,
        page_sizes: Iterable[int] = (1000,),
        instance_profiles: Iterable[str] = (),
    ) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = [("RoleDetailList", r) for r in roles]
        self.items += [("Policies", p) for p in policies]
        self.page_sizes = itertools.cycle(list(page_sizes))
        self.instance_profiles = set(instance_profiles)
        self.requests: list[dict[str, str]] = []
        self.calls = 0
        self._lock = threading.Lock()
        super().__init__(self._handler())

    def answer(self, params: dict[str, str]) -> tuple[int, str]:
        """(status, XML body) for one request's form parameters."""
        with self._lock:
            self.calls += 1
            action = params.get("Action", "")
            if action == "GetInstanceProfile":
                return self._instance_profile(params.get("InstanceProfileName", ""))
            if action != "GetAccountAuthorizationDetails":
                return _error(400, "InvalidAction", f"{action} is not served here")
            self.requests.append(params)
            return self._details(params)

    def _details(self, params: dict[str, str]) -> tuple[int, str]:
        start = int(params.get("Marker") or 0)
        limit = int(params.get("MaxItems") or 100)
        if not 1 <= limit <= 1000:
            return _error(400, "ValidationError", "MaxItems must be between 1 and 1000")
        size = min(next(self.page_sizes), limit)
        page = self.items[start : start + size]
        result: dict[str, list[dict[str, Any]]] = {
            "UserDetailList": [],
            "GroupDetailList": [],
            "RoleDetailList": [],
            "Policies": [],
        }
        for key, item in page:
            result[key].append(item)
        end = start + len(page)
        truncated = end < len(self.items)
        body = _xml(result) + f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"
        if truncated:
            body += f"<Marker>{end}</Marker>"
        return 200, _response("GetAccountAuthorizationDetails", body)

    def _instance_profile(self, name: str) -> tuple[int, str]:
        if name not in self.instance_profiles:
            return _error(404, "NoSuchEntity", f"Instance Profile {name} cannot be found.")
        profile = {
            "InstanceProfile": {
                "Path": "/",
                "InstanceProfileName": name,
                "InstanceProfileId": "AIPA" + uuid.uuid4().hex[:16].upper(),
                "Arn": f"arn:aws:iam::123456789012:instance-profile/{name}",
                "CreateDate": "2026-01-01T00:00:00Z",
                "Roles": [],
            }
        }
        return 200, _response("GetInstanceProfile", _xml(profile))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
                params = {k: v[0] for k, v in form.items()}
                status, body = server.answer(params)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


def _response(action: str, body: str) -> str:
    request_id = uuid.uuid4()
    return (
        f'<{action}Response xmlns="{NS}"><{action}Result>{body}</{action}Result>'
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    )


def _error(status: int, code: str, message: str) -> tuple[int, str]:
    body = (
        f'<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return status, body


def role_detail(
    name: str,
    trust: dict[str, Any],
    *,
    account: str = "123456789012",
    managed: Iterable[str] = (),
    inline: dict[str, dict[str, Any]] | None = None,
    boundary: str | None = None,
    instance_profiles: Iterable[str] = (),
) -> dict[str, Any]:
    """One RoleDetailList item, shaped as IAM returns it."""
    arn = f"arn:aws:iam::{account}:role/{name}"
    role_id = "AROA" + uuid.uuid5(uuid.NAMESPACE_URL, arn).hex[:16].upper()
    item: dict[str, Any] = {
        "Path": "/",
        "RoleName": name,
        "RoleId": role_id,
        "Arn": arn,
        "CreateDate": "2026-01-01T00:00:00Z",
        "AssumeRolePolicyDocument": trust,
        "InstanceProfileList": [
            {
                "Path": "/",
                "InstanceProfileName": profile,
                "InstanceProfileId": "AIPA" + role_id[4:],
                "Arn": f"arn:aws:iam::{account}:instance-profile/{profile}",
                "CreateDate": "2026-01-01T00:00:00Z",
                "Roles": [
                    {
                        "Path": "/",
                        "RoleName": name,
                        "RoleId": role_id,
                        "Arn": arn,
                        "CreateDate": "2026-01-01T00:00:00Z",
                    }
                ],
            }
            for profile in instance_profiles
        ],
        "RolePolicyList": [
            {"PolicyName": n, "PolicyDocument": d} for n, d in (inline or {}).items()
        ],
        "AttachedManagedPolicies": [
            {"PolicyName": a.rsplit("/", 1)[-1], "PolicyArn": a} for a in managed
        ],
        "Tags": [],
    }
    if boundary:
        item["PermissionsBoundary"] = {
            "PermissionsBoundaryType": "PermissionsBoundaryPolicy",
            "PermissionsBoundaryArn": boundary,
        }
    return item
