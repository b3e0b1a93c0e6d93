"""CloudTrail records (bare, in an EventBridge envelope, or a log file) -> Changes.

Only IAM and STS calls that touch the watched identities become Changes; everything
else is Skipped with a reason. The after-state is taken from the event itself, so rules
need no API read: each Change carries its kind's payload (trustwatch.aws.changes).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from trustwatch.aws.changes import (
    BoundaryDeleted,
    BoundaryPut,
    FunctionRoleSet,
    IamPayload,
    InlinePolicyDeleted,
    InlinePolicyPut,
    InstanceProfileChanged,
    ManagedPolicyChanged,
    PolicyVersion,
    RoleAssumed,
    RoleCreated,
    RoleDeleted,
    TrustUpdated,
)
from trustwatch.changes import Change, EventError, Skipped, SubjectPrefilter
from trustwatch.changes import object_field as _dict
from trustwatch.changes import str_or_empty as _str

if TYPE_CHECKING:
    from trustwatch.baseline import Baseline

# eventName -> change kind
IAM_KINDS = {
    "CreateRole": "role.created",
    "UpdateAssumeRolePolicy": "role.trust_updated",
    "DeleteRole": "role.deleted",
    "AttachRolePolicy": "role.policy_attached",
    "DetachRolePolicy": "role.policy_detached",
    "PutRolePolicy": "role.inline_put",
    "DeleteRolePolicy": "role.inline_deleted",
    "PutRolePermissionsBoundary": "role.boundary_put",
    "DeleteRolePermissionsBoundary": "role.boundary_deleted",
    "CreatePolicyVersion": "policy.version_created",
    "SetDefaultPolicyVersion": "policy.default_version_set",
    "AddRoleToInstanceProfile": "instance_profile.role_added",
    "RemoveRoleFromInstanceProfile": "instance_profile.role_removed",
    "DeleteInstanceProfile": "instance_profile.deleted",
}
STS_KINDS = {
    "AssumeRole": "role.assumed",
    "AssumeRoleWithSAML": "role.assumed",
    "AssumeRoleWithWebIdentity": "role.assumed",
}

# Lambda calls that set a function's execution role. CloudTrail logs Lambda's eventName
# with the API version it was called through ("CreateFunction20150331",
# "UpdateFunctionConfiguration20150331v2"), the same API whatever the suffix
# (https://docs.aws.amazon.com/lambda/latest/dg/logging-using-cloudtrail.html): parse()
# reads any version; EventBridge routes the names listed here.
LAMBDA_SOURCE = "lambda.amazonaws.com"
LAMBDA_KINDS = {
    "CreateFunction": "function.created",
    "UpdateFunctionConfiguration": "function.configuration_updated",
    # new code for a function: if it runs as the responder's role, that code is the responder
    "UpdateFunctionCode": "function.code_updated",
}
LAMBDA_EVENT_NAMES = (
    "CreateFunction",
    "CreateFunction20150331",
    "UpdateFunctionConfiguration",
    "UpdateFunctionConfiguration20150331",
    "UpdateFunctionConfiguration20150331v2",
    "UpdateFunctionCode",
    "UpdateFunctionCode20150331",
    "UpdateFunctionCode20150331v2",
)
_LAMBDA_VERSION = re.compile(r"(?:\d{8}(?:v\d+)?)?")


def lambda_kind(event_name: str) -> str | None:
    """The change kind of a Lambda eventName, its API-version suffix ignored."""
    for operation, kind in LAMBDA_KINDS.items():
        suffix = event_name.removeprefix(operation)
        if suffix != event_name and _LAMBDA_VERSION.fullmatch(suffix):
            return kind
    return None


def watched_operations() -> dict[str, tuple[str, ...]]:
    """CloudTrail eventSource -> the eventNames parse() turns into changes (deploy/aws
    routes exactly these from EventBridge)."""
    from trustwatch.aws import buckets

    return {
        "iam.amazonaws.com": tuple(IAM_KINDS),
        "sts.amazonaws.com": tuple(STS_KINDS),
        buckets.SOURCE: buckets.watched_operations(),  # watched buckets (trustwatch.aws.buckets)
        LAMBDA_SOURCE: LAMBDA_EVENT_NAMES,  # a function given the responder's role
    }


PREFILTER_KEYS = ("eventSource", "eventName", ("detail-type", "Records"))  # intake.Prefilter
# recognizes() is true of every object holding these keys (intake.Prefilter.line_noise)
PREFILTER_RECOGNIZED = ("eventSource", "eventName", "awsRegion")


_ROLE_IN_MESSAGE = re.compile(r"on resource: (arn:aws[\w-]*:iam::\d{12}:role/\S+)")


def _unwatched_role_arns(baseline: Baseline) -> Callable[[str], bool]:
    from trustwatch.aws.rules import unwatched_role_arns  # the rules know the baseline

    return unwatched_role_arns(baseline)


def _unwatched_roles_in_message(baseline: Baseline) -> Callable[[str], bool]:
    # as parse() reads a record without a roleArn: no role in the message is a skip
    unwatched_arn = _unwatched_role_arns(baseline)

    def unwatched(message: str) -> bool:
        m = _ROLE_IN_MESSAGE.search(message)
        return m is None or unwatched_arn(m[1].rstrip("."))

    return unwatched


# An AssumeRole of a role that is neither the baseline's nor the responder's gives no
# finding (aws.assume_role.* judge only those; the one that reads failed calls,
# external_id_mismatch, asks for a baseline role first) and, with these fields of the
# shapes parse() reads, no error: replay counts it as a skip (intake.Prefilter). A failed
# call is decided the same way: by its requestParameters.roleArn, or, logged with
# requestParameters null (most denied calls), by the role its errorMessage names, as
# parse() reads it. AssumeRoleWithSAML/WithWebIdentity take the full path (rarer, and
# their callers are read differently).
_SUBJECT_SHAPES = (("userIdentity", "sessionContext", "sessionIssuer"), ("responseElements",))
PREFILTER_SUBJECT = (
    SubjectPrefilter(
        service="sts.amazonaws.com",
        operation="AssumeRole",
        subject=("requestParameters", "roleArn"),
        objects=_SUBJECT_SHAPES,
        unwatched=_unwatched_role_arns,
    ),
    # a denied call logged without parameters names the role only in its errorMessage,
    # which parse() reads when requestParameters holds no roleArn (here: null or absent)
    SubjectPrefilter(
        service="sts.amazonaws.com",
        operation="AssumeRole",
        subject=("errorMessage",),
        objects=_SUBJECT_SHAPES,
        nulls=("requestParameters",),
        unwatched=_unwatched_roles_in_message,
    ),
)


def recognizes(doc: Any) -> bool:
    if isinstance(doc, dict):
        if "Records" in doc and isinstance(doc["Records"], list):
            return True
        if "detail-type" in doc and "source" in doc:
            return True
        return "eventSource" in doc and "eventName" in doc and "awsRegion" in doc
    return False


def records(doc: Any) -> Iterator[Any]:
    if isinstance(doc.get("Records"), list):  # a log file (an envelope may hold any key)
        yield from doc["Records"]
    elif "detail-type" in doc:
        yield doc  # the envelope itself: parse() unwraps it and keeps its account
    else:
        yield doc


def partition_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[1] if len(parts) > 2 and parts[0] == "arn" and parts[1] else "aws"


def role_arn(partition: str, account: str, name: str, path: str = "/") -> str:
    path = path if path.startswith("/") else "/" + path
    path = path if path.endswith("/") else path + "/"
    return f"arn:{partition}:iam::{account}:role{path}{name}"


_ASSUMED_ROLE_SESSION = re.compile(r"arn:([\w-]+):sts::(\d{12}):assumed-role/([^/]+)/.*")


def actor_ids(identity: dict[str, Any]) -> tuple[str, list[str]]:
    """The actor's display ARN and every ARN it is known by (session -> its role)."""
    arn = _str(identity.get("arn"))
    ids = [arn] if arn else []
    issuer = _dict(_dict(identity, "sessionContext"), "sessionIssuer")
    issuer_arn = _str(issuer.get("arn"))
    if issuer_arn:
        ids.append(issuer_arn)
    # arn:aws:sts::A:assumed-role/R/session -> arn:aws:iam::A:role/R (a role path is not in it)
    m = _ASSUMED_ROLE_SESSION.fullmatch(arn)
    if m:
        ids.append(f"arn:{m[1]}:iam::{m[2]}:role/{m[3]}")
    if issuer_arn and "/" in issuer_arn.split(":role", 1)[-1]:
        name = issuer_arn.rsplit("/", 1)[-1]
        ids.append(f"{issuer_arn.split(':role', 1)[0]}:role/{name}")
    if not arn:
        # AWSAccount / AWSService callers have no ARN: say who and from which account
        who = _str(identity.get("invokedBy")) or _str(identity.get("principalId"))
        account = _str(identity.get("accountId"))
        arn = f"{who} (account {account})" if who and account else who or account
    return arn, list(dict.fromkeys(ids))


def assumed_role(arn: str) -> tuple[str, str] | None:
    """(account, role name) of an AssumeRole* roleArn (the account may be ""), or None
    if it is not a role ARN (parse() reports that record)."""
    parts = arn.split(":")
    if len(parts) < 6 or parts[0] != "arn" or not parts[5].startswith("role/"):
        return None
    return parts[4], arn.rsplit("/", 1)[-1]


def parse(record: Any) -> list[Change] | Skipped:
    if not isinstance(record, dict):
        raise EventError(f"a CloudTrail record must be an object, got {type(record).__name__}")
    envelope_account = ""
    if "detail-type" in record:
        detail_type = _str(record.get("detail-type"))
        if detail_type != "AWS API Call via CloudTrail":
            return Skipped(f"EventBridge {detail_type or 'event'!r}: not an API call")
        envelope_account = _str(record.get("account"))
        record = record.get("detail")
        if not isinstance(record, dict):
            raise EventError("EventBridge envelope without a CloudTrail 'detail' object")
    name = record.get("eventName")
    source = record.get("eventSource")
    if not isinstance(name, str) or not isinstance(source, str):
        raise EventError("CloudTrail record without string eventName/eventSource")
    event_id = _str(record.get("eventID"))
    if _str(record.get("eventType")) not in ("", "AwsApiCall"):
        return Skipped(f"{record.get('eventType')}: not an API call", event_id, name)
    if source == "s3.amazonaws.com":
        from trustwatch.aws import buckets

        return buckets.parse(record, envelope_account)
    if source == LAMBDA_SOURCE:
        return _lambda(record, name, event_id, envelope_account)
    if source == "iam.amazonaws.com":
        kind = IAM_KINDS.get(name)
    elif source == "sts.amazonaws.com":
        kind = STS_KINDS.get(name)
    else:
        return Skipped(f"{source} {name}: not an identity change", event_id, name)
    if kind is None:
        return Skipped(f"{name}: not a watched IAM/STS call", event_id, name)

    identity, account, partition = record_context(record, envelope_account)
    actor = actor_ids(identity)
    ids = actor[1]
    params = _dict(record, "requestParameters")
    response = _dict(record, "responseElements")
    error_code = _str(record.get("errorCode"))
    scope = account
    payload: IamPayload | RoleAssumed
    if kind == "role.assumed":
        identity_arn = _str(params.get("roleArn"))
        if not identity_arn:
            m = _ROLE_IN_MESSAGE.search(_str(record.get("errorMessage")))
            if not m:
                return Skipped("AssumeRole without a role ARN in the record", event_id, name)
            identity_arn = m[1].rstrip(".")
        payload = _assumed(name, identity, ids, params, partition)
        subject = assumed_role(identity_arn)
        if subject is None:
            raise EventError(f"AssumeRole roleArn {identity_arn[:200]!r} is not a role ARN")
        # the watched role lives in the role's account, not necessarily the recipient's
        scope, role_name = subject[0] or account, subject[1]
    else:
        try:
            identity_arn, role_name, payload = _subject(kind, params, response, partition, account)
        except KeyError as exc:
            if error_code:
                return Skipped(f"{name} failed ({error_code}) without parameters", event_id, name)
            raise EventError(f"{name}: requestParameters.{exc.args[0]} missing") from None
    return [cloudtrail_change(record, kind, scope, identity_arn, role_name, payload, actor)]


def _lambda(
    record: dict[str, Any], name: str, event_id: str, envelope_account: str
) -> list[Change] | Skipped:
    """CreateFunction / UpdateFunctionConfiguration / UpdateFunctionCode: the function and
    the role it runs as."""
    kind = lambda_kind(name)
    if kind is None:
        return Skipped(f"{name}: not a watched Lambda call", event_id, name)
    identity = _dict(record, "userIdentity")
    params = _dict(record, "requestParameters")
    account = (
        _str(record.get("recipientAccountId"))
        or envelope_account
        or _str(identity.get("accountId"))
    )
    function = _str(params.get("functionName"))
    if not function:
        if _str(record.get("errorCode")):
            return Skipped(f"{name} failed without parameters", event_id, name)
        raise EventError(f"{name}: requestParameters.functionName missing")
    arn = _str(_dict(record, "responseElements").get("functionArn"))
    if function.startswith("arn:"):  # the name may be given as an ARN
        arn = arn or function
        function = (function.split(":") + [""] * 7)[6] or function
    elif ":" in function:  # account-id:function:name
        function = function.rsplit(":", 1)[-1]
    partition = partition_of(_str(identity.get("arn")) or "arn:aws:")
    region = _str(record.get("awsRegion"))
    arn = arn or f"arn:{partition}:lambda:{region}:{account}:function:{function}"
    requested = _str(params.get("role")) if kind != "function.code_updated" else ""
    if requested:
        payload = FunctionRoleSet(role_arn=requested)
    else:  # the role the function runs as after the call, from its configuration
        current = _str(_dict(record, "responseElements").get("role"))
        payload = FunctionRoleSet(role_arn=current, role_unchanged=True)
    return [cloudtrail_change(record, kind, account, arn, function, payload)]


def record_context(
    record: dict[str, Any], envelope_account: str = ""
) -> tuple[dict[str, Any], str, str]:
    """(userIdentity, the account the record is about, its partition) of a CloudTrail
    record: the recipient account, else the envelope's, else the caller's."""
    identity = _dict(record, "userIdentity")
    account = (
        _str(record.get("recipientAccountId"))
        or envelope_account
        or _str(identity.get("accountId"))
    )
    return identity, account, partition_of(_str(identity.get("arn")) or "arn:aws:")


def cloudtrail_change(
    record: dict[str, Any],
    kind: str,
    scope: str,
    identity: str,
    name: str,
    payload: Any,
    actor_and_ids: tuple[str, list[str]] | None = None,
) -> Change:
    """The Change of one CloudTrail record: its common fields read from the record (the
    caller, where from, its outcome), the subject and payload as the caller found them
    (`actor_and_ids`: actor_ids of its userIdentity, when the caller has it already)."""
    actor, ids = actor_and_ids or actor_ids(_dict(record, "userIdentity"))
    return Change(
        cloud="aws",
        kind=kind,
        event_name=_str(record.get("eventName")),
        scope=scope,
        identity=identity,
        name=name,
        event_id=_str(record.get("eventID")),
        event_time=_str(record.get("eventTime")),
        correlation_id=_str(record.get("requestID")),
        actor=actor,
        actor_ids=ids,
        source_ip=_str(record.get("sourceIPAddress")),
        user_agent=_str(record.get("userAgent")),
        error_code=_str(record.get("errorCode")),
        payload=payload,
    )


def _assumed(
    name: str, identity: dict[str, Any], ids: list[str], params: dict[str, Any], partition: str
) -> RoleAssumed:
    """What an AssumeRole* call says of its caller and its parameters."""
    external_id = params.get("externalId")
    return RoleAssumed(
        callers=tuple(_callers(name, identity, ids, params, partition)),
        caller_account=_str(identity.get("accountId")),
        assume_action="sts:" + name.lower(),
        parameters_recorded=bool(params),
        external_id=external_id if isinstance(external_id, str) else None,
        session_name=_str(params.get("roleSessionName")),
    )


def _callers(
    name: str, identity: dict[str, Any], ids: list[str], params: dict[str, Any], partition: str
) -> list[str]:
    """Who called AssumeRole*, as canonical trust principals (aws.policy.principals' spelling).

    AssumeRoleWithSAML: the SAML provider ARN is requestParameters.principalArn
    (userIdentity.identityProvider is a hash); AssumeRoleWithWebIdentity: the provider is
    userIdentity.identityProvider ("accounts.google.com", an OIDC provider ARN or host).
    https://docs.aws.amazon.com/IAM/latest/UserGuide/cloudtrail-integration.html
    AssumeRole: the caller's ARNs (session and its role), a service, or nothing when
    only the account is logged (userIdentity type AWSAccount: rules use caller_account).
    """
    if name == "AssumeRoleWithSAML":
        provider = _str(params.get("principalArn"))
        return [f"federated:{provider}"] if provider else []
    if name == "AssumeRoleWithWebIdentity":
        provider = _str(identity.get("identityProvider"))
        return [f"federated:{provider}"] if provider else []
    if _str(identity.get("type")) == "AWSService":
        service = _str(identity.get("invokedBy"))
        return [f"service:{service.lower()}"] if service else []
    return [i for i in ids if i.startswith(f"arn:{partition}:")] or ids


def _param(params: dict[str, Any], key: str) -> str:
    value = params[key]
    if not isinstance(value, str):
        raise EventError(f"requestParameters.{key} is a {type(value).__name__}, expected a string")
    return value


def _subject(
    kind: str, params: dict[str, Any], response: dict[str, Any], partition: str, account: str
) -> tuple[str, str, IamPayload]:
    """(identity ARN, short name, payload) for one IAM call (KeyError: a parameter missing)."""
    if kind.startswith("policy."):
        policy_arn = _param(params, "policyArn")
        version: PolicyVersion
        if kind == "policy.version_created":
            made_default = params.get("setAsDefault") in (True, "true", "True")
            document = _policy_text(params.get("policyDocument"), "policyDocument")
            version_id = _str(_dict(response, "policyVersion").get("versionId"))
            version = PolicyVersion(policy_arn, version_id, made_default, document)
        else:  # policy.default_version_set: the version named is the default now
            version = PolicyVersion(policy_arn, _str(params.get("versionId")), made_default=True)
        return policy_arn, policy_arn.rsplit("/", 1)[-1], version
    if kind.startswith("instance_profile."):
        profile = _param(params, "instanceProfileName")
        arn = f"arn:{partition}:iam::{account}:instance-profile/{profile}"
        return arn, profile, InstanceProfileChanged(role_name=_str(params.get("roleName")))

    name = _param(params, "roleName")
    created = _dict(response, "role")
    arn = _str(created.get("arn")) or role_arn(
        partition, account, name, _str(params.get("path")) or "/"
    )
    payload: IamPayload
    if kind == "role.created":
        payload = RoleCreated(
            policy=_policy_text(params.get("assumeRolePolicyDocument"), "assumeRolePolicyDocument"),
            boundary=_str(params.get("permissionsBoundary")) or None,
        )
    elif kind == "role.trust_updated":
        payload = TrustUpdated(_policy_text(params["policyDocument"], "policyDocument"))
    elif kind in ("role.policy_attached", "role.policy_detached"):
        payload = ManagedPolicyChanged(_param(params, "policyArn"))
    elif kind == "role.inline_put":
        payload = InlinePolicyPut(
            policy_name=_param(params, "policyName"),
            policy=_policy_text(params["policyDocument"], "policyDocument"),
        )
    elif kind == "role.inline_deleted":
        payload = InlinePolicyDeleted(_param(params, "policyName"))
    elif kind == "role.boundary_put":
        payload = BoundaryPut(_param(params, "permissionsBoundary"))
    elif kind == "role.boundary_deleted":
        payload = BoundaryDeleted()
    else:  # role.deleted
        payload = RoleDeleted()
    return arn, name, payload


def _policy_text(value: Any, field: str) -> dict[str, Any]:
    """The logged document (JSON text, URL-encoded text or object), parsed and checked."""
    if value is None:
        raise KeyError(field)
    if not isinstance(value, str | dict):
        raise EventError(
            f"requestParameters.{field} is a {type(value).__name__}, expected JSON text"
        )
    from trustwatch.aws.policy import PolicyError, load_document

    try:
        return load_document(value)
    except PolicyError as exc:
        raise EventError(f"requestParameters.{field}: {exc}") from None
