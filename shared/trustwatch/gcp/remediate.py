"""Put GCP findings back to the baseline: the `remediate` part (trustwatch.remediation).

`remediator_from_env()` gives the `Remediator` the GCP function (and `trustwatch
remediate`) use. Its plan re-reads the state a finding is about, as it is now, and only
ever narrows toward the baseline:

- `remove_iam_binding` / `remove_bucket_binding`: the finding's member leaves the finding's
  role on the project (cloudresourcemanager v3), the service account (iam v1) or the
  bucket (storage v1) IAM policy, by read-modify-write: getIamPolicy with
  `requestedPolicyVersion: 3`, remove exactly that member from exactly that binding (a
  binding with a condition is another binding: kept as it is; the finding's `actual` may
  name a `condition`, else the unconditional binding is meant), a binding left empty is
  dropped, setIamPolicy with the etag read and the version kept (3 once a condition is in
  the policy). A write answered 409 ABORTED (412 from Cloud Storage): someone changed the
  policy since our read, so it is read again and the whole read-modify-write redone, at
  most `ROUNDS` times; a write is never retried with a stale etag.
  https://cloud.google.com/iam/docs/policies#etag
  https://cloud.google.com/iam/docs/policies#versions
- `disable_service_account_key` (or delete, `TRUSTWATCH_GCP_KEY_ACTION=delete`): the
  user-managed key the finding names, of an account whose baseline says none.
  https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts.keys/disable
- `deactivate_hmac_key`: the HMAC key set INACTIVE (storage v1 hmacKeys.update, with its
  etag), only if it belongs to the finding's account.
  https://cloud.google.com/storage/docs/json_api/v1/projects/hmacKeys/update
- `enforce_public_access_prevention` / `enable_uniform_bucket_level_access`: a PATCH of the
  bucket's `iamConfiguration`, that one setting only.
  https://cloud.google.com/storage/docs/json_api/v1/buckets/patch

Before planning, the grant is judged again by the rule that found it, against the
baseline as it is now (the baseline may have been widened since): no longer drift, or
already gone, is `skipped` with no write. A binding the baseline itself expects (a baseline
account's project role) is never removed, whichever finding it reaches. Folder and
organization policies, and what would give access back (an expected binding re-added, an
account enabled or undeleted, a custom role restored), are alert only. `verify()` reads
the state back.

All calls go through the enricher's AuthorizedSession (`trustwatch.gcp.enrich.ApiClient`:
the same `TRUSTWATCH_GCP_API_ENDPOINT`, credentials, and urllib3 retry of 429 and 5xx
honouring Retry-After); anything else (a 403) raises, and the core reports it `failed`.
The function's identity needs `WRITE_PERMISSIONS` (deploy/gcp grants them only with
`remediation_enabled`) besides the reads in `READ_PERMISSIONS`.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from trustwatch.baseline import Baseline, Mode
from trustwatch.changes import Change
from trustwatch.engine import REGISTRY, Rule
from trustwatch.findings import Finding
from trustwatch.gcp.changes import BindingDelta, PolicySet, ServiceAccountPolicySet
from trustwatch.gcp.enrich import API_ENDPOINT, POLICY_VERSION, RETRIES, ApiClient, GcpApiError
from trustwatch.gcp.rules import accounts, bucket_of, norm_member, protected
from trustwatch.remediation import NothingToDo, Plan

log = logging.getLogger("trustwatch")

ROUNDS = 5  # read-modify-write rounds before giving up on a policy that keeps changing
CONFLICT = (409, 412)  # ABORTED (Resource Manager, IAM); conditionNotMet (Cloud Storage)
KEY_ACTIONS = ("disable", "delete")

# What each action calls, beyond the enricher's reads (deploy/gcp grants exactly these
# when remediation is enabled; tests/test_deploy.py compares).
WRITE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "remove_iam_binding": (
        "resourcemanager.projects.setIamPolicy",
        "iam.serviceAccounts.setIamPolicy",
        "storage.buckets.setIamPolicy",  # a baseline account's grant on another bucket
    ),
    "remove_bucket_binding": ("storage.buckets.setIamPolicy",),
    "disable_service_account_key": ("iam.serviceAccountKeys.disable",),
    "delete_service_account_key": ("iam.serviceAccountKeys.delete",),
    "deactivate_hmac_key": ("storage.hmacKeys.update",),
    "enforce_public_access_prevention": ("storage.buckets.update",),
    "enable_uniform_bucket_level_access": ("storage.buckets.update",),
}
# The reads a plan makes that the enricher's custom role does not hold already.
READ_PERMISSIONS = ("iam.serviceAccountKeys.get",)

_ALERT_ONLY = {
    "restore_iam_binding": "an expected binding is not re-added automatically",
    "restore_bucket_binding": "an expected bucket binding is not re-added automatically",
    "undelete_service_account": "a deleted service account is not undeleted automatically",
    "enable_service_account": "a disabled service account is not re-enabled automatically",
    "restore_custom_role": "a custom role is not rewritten automatically",
    "undelete_custom_role": "a deleted custom role is not undeleted automatically",
}
# which change kind each policy resource's SetIamPolicy is, to judge a grant again
_POLICY_KIND = {
    "project": "resource.iam_policy_set",
    "service_account": "service_account.iam_policy_set",
    "bucket": "bucket.iam_policy_set",
}


def write_permissions(key_action: str = "disable") -> frozenset[str]:
    """Every permission a remediating function calls with, for this key action."""
    skip = (
        "delete_service_account_key" if key_action == "disable" else "disable_service_account_key"
    )
    return frozenset(p for action, ps in WRITE_PERMISSIONS.items() if action != skip for p in ps)


def remediator_from_env(environ: Mapping[str, str]) -> GcpRemediator:
    """The GCP remediator: TRUSTWATCH_GCP_API_ENDPOINT, TRUSTWATCH_GCP_KEY_ACTION (a value
    other than disable or delete is logged and read as disable, the reversible one: a
    typo must not stop the alerts)."""
    action = (environ.get("TRUSTWATCH_GCP_KEY_ACTION") or "disable").strip().lower()
    if action not in KEY_ACTIONS:
        log.warning("TRUSTWATCH_GCP_KEY_ACTION=%r is not disable or delete: disable", action)
        action = "disable"
    endpoint = environ.get("TRUSTWATCH_GCP_API_ENDPOINT") or API_ENDPOINT
    return GcpRemediator(ApiClient(None, endpoint, dict(RETRIES)), key_action=action)


class GcpRemediator:
    """Plans (and applies) the put-back of `gcp.*` findings through one ApiClient."""

    def __init__(self, api: ApiClient, *, key_action: str = "disable", rounds: int = ROUNDS):
        self.api = api
        self.key_action = key_action
        self.rounds = rounds

    def plan(self, finding: Finding, baseline: Baseline) -> Plan | NothingToDo:
        """Re-read what the finding is about and plan its put-back (see the module doc)."""
        action = finding.remediation.action
        if action in _ALERT_ONLY:
            return NothingToDo(f"alert only: {_ALERT_ONLY[action]}", "none")
        mode = _mode(finding, baseline)
        if mode is None:
            return NothingToDo(f"{finding.identity} is not in the baseline: not touched", "none")
        planner: dict[str, Callable[[Finding, Baseline, Mode], Plan | NothingToDo]] = {
            "remove_iam_binding": self._remove_binding,
            "remove_bucket_binding": self._remove_binding,
            "disable_service_account_key": self._user_managed_key,
            "deactivate_hmac_key": self._hmac_key,
            "enforce_public_access_prevention": self._bucket_setting,
            "enable_uniform_bucket_level_access": self._bucket_setting,
        }
        if action not in planner:
            return NothingToDo(f"alert only: {action} is not automated", "none")
        return planner[action](finding, baseline, mode)

    # --- IAM policies ----------------------------------------------------------------------

    def _remove_binding(
        self, finding: Finding, baseline: Baseline, mode: Mode
    ) -> Plan | NothingToDo:
        actual = finding.actual if isinstance(finding.actual, dict) else {}
        resource, role, member = (str(actual.get(k) or "") for k in ("resource", "role", "member"))
        if not (resource and role and member):
            return NothingToDo("the finding names no resource, role and member", "none")
        kind = _policy_resource(resource, finding.remediation.action)
        if kind is None:
            return NothingToDo(f"alert only: {resource} is above the project", "none")
        condition = _condition(actual.get("condition"))
        expected = _expected_binding(baseline, resource, role, member)
        if expected:
            return NothingToDo(f"the baseline expects {role} for {member} on {resource}", "none")
        rule = REGISTRY.rules.get(finding.rule)
        if rule is None or _POLICY_KIND[kind] not in rule.kinds:
            return NothingToDo(
                f"rule {finding.rule} does not judge {resource}: not touched", "none"
            )
        grant = BindingDelta("ADD", role, member, _condition_fields(actual.get("condition")))
        if not _still_drift(rule, finding, baseline, kind, resource, grant):
            return NothingToDo(
                f"{role} for {member} on {resource} is not drift against the current baseline"
            )
        target = _target(kind, resource)
        policy = self._policy(kind, resource)
        if policy is None:
            return NothingToDo(f"{target} is gone (404): nothing to remove")
        binding = _binding(policy, role, condition)
        found = _members(binding, member)
        if binding is None or not found:
            under = [b for b in _bindings(policy) if b.get("role") == role and _members(b, member)]
            if under:
                return NothingToDo(
                    f"{member} holds {role} on {target} only in another binding of the role "
                    "(another condition) than the finding names: left as it is",
                    "none",
                )
            return NothingToDo(f"already removed: {member} no longer holds {role} on {target}")
        before = _shown_binding(binding)
        after = _shown_binding(binding, without=found)

        def apply() -> None:
            self._write_policy(kind, resource, role, member, condition, first=policy)

        def verify() -> str | None:
            now = self._policy(kind, resource)
            if now is None:
                return f"{target} is gone (404)"
            left = _members(_binding(now, role, condition), member)
            return f"{', '.join(left)} still holds {role} on {target}" if left else None

        action = finding.remediation.action
        return Plan(action, target, mode, before, after, apply, verify)

    def _policy(self, kind: str, resource: str) -> dict[str, Any] | None:
        return self.api.policy(PolicySet(kind, resource))

    def _write_policy(
        self,
        kind: str,
        resource: str,
        role: str,
        member: str,
        condition: str | None,
        *,
        first: dict[str, Any],
    ) -> None:
        """Read-modify-write until a write lands with a current etag (at most `rounds`)."""
        policy: dict[str, Any] | None = first
        for _ in range(self.rounds):
            if policy is None:
                raise RuntimeError(f"{_target(kind, resource)} is gone (404)")
            narrowed = _without(policy, role, member, condition)
            if narrowed is None:
                return  # someone else removed it meanwhile: verify() says so
            try:
                self._set_policy(kind, resource, narrowed)
                return
            except GcpApiError as exc:
                if exc.status not in CONFLICT:
                    raise
            policy = self._policy(kind, resource)  # changed since our read: start over
        raise RuntimeError(
            f"{_target(kind, resource)}: the policy changed under each of {self.rounds} "
            "read-modify-write rounds; not written"
        )

    def _set_policy(self, kind: str, resource: str, policy: dict[str, Any]) -> None:
        if kind == "bucket":
            url = self.api.url("storage", f"/storage/v1/b/{quote(resource, safe='')}/iam")
            answer = self.api.call("PUT", url, json=policy)
        elif kind == "service_account":
            path = f"/v1/projects/-/serviceAccounts/{quote(resource, safe='@')}:setIamPolicy"
            answer = self.api.call("POST", self.api.url("iam", path), json={"policy": policy})
        else:
            path = f"/v3/projects/{quote(resource.removeprefix('projects/'), safe='')}:setIamPolicy"
            url = self.api.url("cloudresourcemanager", path)
            answer = self.api.call("POST", url, json={"policy": policy})
        if answer is None:
            raise RuntimeError(f"{_target(kind, resource)} is gone (404)")

    # --- keys ------------------------------------------------------------------------------

    def _user_managed_key(
        self, finding: Finding, baseline: Baseline, mode: Mode
    ) -> Plan | NothingToDo:
        account = protected(baseline).get(finding.identity.lower())
        if account is None or account.spec.user_managed_keys:
            return NothingToDo(f"the baseline allows user-managed keys for {finding.identity}")
        actual = finding.actual if isinstance(finding.actual, dict) else {}
        key_id = str(actual.get("key_id") or "").rsplit("/", 1)[-1]
        if not key_id:
            return NothingToDo("alert only: the key id was not logged", "none")
        email = account.email.lower()
        path = (
            f"/v1/projects/-/serviceAccounts/{quote(email, safe='@')}/keys/{quote(key_id, safe='')}"
        )
        url = self.api.url("iam", path)
        target = f"projects/-/serviceAccounts/{email}/keys/{key_id}"
        key = self.api.call("GET", url)
        if key is None:
            return NothingToDo(f"key {key_id} of {email} is already deleted")
        if key.get("keyType") == "SYSTEM_MANAGED":
            return NothingToDo(f"key {key_id} is Google-managed: not touched", "none")
        delete = self.key_action == "delete"
        if key.get("disabled") and not delete:
            return NothingToDo(f"key {key_id} of {email} is already disabled")
        before = {"key": key_id, "disabled": bool(key.get("disabled"))}
        after: dict[str, Any] = (
            {"key": key_id, "deleted": True} if delete else {**before, "disabled": True}
        )

        def apply() -> None:
            answer = (
                self.api.call("DELETE", url)
                if delete
                else self.api.call("POST", url + ":disable", json={})
            )
            if answer is None and not delete:
                raise RuntimeError(f"key {key_id} of {email} is gone (404)")

        def verify() -> str | None:
            now = self.api.call("GET", url)
            if delete:
                return None if now is None else f"key {key_id} still exists"
            if now is None:
                return f"key {key_id} is gone (404), not disabled"
            return None if now.get("disabled") else f"key {key_id} is still enabled"

        action = "delete_service_account_key" if delete else "disable_service_account_key"
        return Plan(action, target, mode, before, after, apply, verify)

    def _hmac_key(self, finding: Finding, baseline: Baseline, mode: Mode) -> Plan | NothingToDo:
        account = protected(baseline).get(finding.identity.lower())
        if account is None or account.spec.user_managed_keys:
            return NothingToDo(f"the baseline allows keys for {finding.identity}")
        actual = finding.actual if isinstance(finding.actual, dict) else {}
        access_id = str(actual.get("hmac_access_id") or "")
        project = (
            finding.scope if not finding.scope.startswith(("folders/", "organizations/")) else ""
        )
        project = project or account.project
        if not access_id or not project:
            return NothingToDo(
                "alert only: the HMAC key's access id or project was not logged", "none"
            )
        path = (
            f"/storage/v1/projects/{quote(project, safe='')}/hmacKeys/{quote(access_id, safe='')}"
        )
        url = self.api.url("storage", path)
        target = f"projects/{project}/hmacKeys/{access_id}"
        key = self.api.call("GET", url)
        if key is None:
            return NothingToDo(f"HMAC key {access_id} is already deleted")
        owner = str(key.get("serviceAccountEmail") or "").lower()
        if owner != account.email.lower():
            return NothingToDo(
                f"HMAC key {access_id} belongs to {owner or 'nobody'}, not {account.email}: not touched",
                "none",
            )
        if key.get("state") != "ACTIVE":
            return NothingToDo(f"HMAC key {access_id} is already {key.get('state')}")
        before = {"accessId": access_id, "state": "ACTIVE"}
        after = {"accessId": access_id, "state": "INACTIVE"}

        def apply() -> None:
            current: dict[str, Any] | None = key
            for _ in range(self.rounds):
                if current is None:
                    raise RuntimeError(f"HMAC key {access_id} is gone (404)")
                if current.get("state") != "ACTIVE":
                    return
                body = {"state": "INACTIVE", "etag": current.get("etag")}
                try:
                    if self.api.call("PUT", url, json=body) is None:
                        raise RuntimeError(f"HMAC key {access_id} is gone (404)")
                    return
                except GcpApiError as exc:
                    if exc.status not in CONFLICT:
                        raise
                current = self.api.call("GET", url)
            raise RuntimeError(f"HMAC key {access_id} changed under each of {self.rounds} updates")

        def verify() -> str | None:
            now = self.api.call("GET", url)
            state = None if now is None else now.get("state")
            return None if state == "INACTIVE" else f"HMAC key {access_id} is {state or 'gone'}"

        return Plan("deactivate_hmac_key", target, mode, before, after, apply, verify)

    # --- bucket settings -------------------------------------------------------------------

    def _bucket_setting(
        self, finding: Finding, baseline: Baseline, mode: Mode
    ) -> Plan | NothingToDo:
        name = finding.identity
        bucket = bucket_of(baseline, name)
        pap = finding.remediation.action == "enforce_public_access_prevention"
        if (
            bucket is None
            or (bucket.public_access_prevention if pap else bucket.uniform_bucket_level_access)
            == "ignore"
        ):
            return NothingToDo(f"the baseline does not require this setting of bucket {name}")
        url = self.api.url("storage", f"/storage/v1/b/{quote(name, safe='')}")
        fields = {"fields": "iamConfiguration"}

        def current() -> tuple[bool, Any]:
            """(the bucket exists, the setting: PAP's text, UBLA's enabled)."""
            found = self.api.call("GET", url, params=fields)
            if found is None:
                return False, None
            config = found.get("iamConfiguration") or {}
            if pap:
                return True, config.get("publicAccessPrevention")
            return True, bool((config.get("uniformBucketLevelAccess") or {}).get("enabled"))

        wanted: Any = "enforced" if pap else True
        key = "publicAccessPrevention" if pap else "uniformBucketLevelAccess.enabled"
        exists, now = current()
        if not exists:
            return NothingToDo(f"bucket {name} is gone (404)")
        if now == wanted:
            return NothingToDo(f"bucket {name} already has {key} {json.dumps(wanted)}")
        patch = (
            {"publicAccessPrevention": "enforced"}
            if pap
            else {"uniformBucketLevelAccess": {"enabled": True}}
        )

        def apply() -> None:
            if self.api.call("PATCH", url, params=fields, json={"iamConfiguration": patch}) is None:
                raise RuntimeError(f"bucket {name} is gone (404)")

        def verify() -> str | None:
            exists, got = current()
            if not exists:
                return f"bucket {name} is gone (404)"
            return None if got == wanted else f"bucket {name} has {key} {json.dumps(got)}"

        target = f"projects/_/buckets/{name}"
        return Plan(
            finding.remediation.action, target, mode, {key: now}, {key: wanted}, apply, verify
        )


# --- pure helpers ------------------------------------------------------------------------------


def _mode(finding: Finding, baseline: Baseline) -> Mode | None:
    """The mode of the baseline entry the finding is about; None if the baseline lacks it."""
    if finding.rule.startswith("gcp.bucket."):
        bucket = bucket_of(baseline, finding.identity)
        return None if bucket is None else baseline.mode_for(bucket.mode)
    account = protected(baseline).get(finding.identity.lower())
    return None if account is None else baseline.mode_for(account.spec.mode)


def _still_drift(
    rule: Rule, finding: Finding, baseline: Baseline, kind: str, resource: str, grant: BindingDelta
) -> bool:
    """Does the rule that found this grant still find it, against today's baseline?"""
    payload: PolicySet
    if kind == "service_account":
        payload = ServiceAccountPolicySet(kind, resource, deltas=(grant,), email=resource.lower())
    else:
        payload = PolicySet(kind, resource, deltas=(grant,))
    change = Change(
        cloud="gcp",
        kind=_POLICY_KIND[kind],
        event_name="SetIamPolicy",
        scope=finding.scope,
        identity=resource,
        payload=payload,
    )
    identity = finding.identity.lower()
    return any((hit.identity or "").lower() == identity for hit in rule.fn(change, baseline))


def _policy_resource(resource: str, action: str) -> str | None:
    """project / service_account / bucket: whose policy holds the grant (None: above)."""
    if action == "remove_bucket_binding":
        return "bucket"
    if resource.startswith(("folders/", "organizations/")):
        return None
    if resource.startswith("projects/"):
        return "project"
    return "service_account" if "@" in resource else "bucket"


def _target(kind: str, resource: str) -> str:
    if kind == "service_account":
        return f"projects/-/serviceAccounts/{resource}"
    if kind == "bucket":
        return f"projects/_/buckets/{resource}"
    return resource


def _expected_binding(baseline: Baseline, resource: str, role: str, member: str) -> bool:
    """Is (resource, role, member) a binding the baseline lists (a project role)?"""
    return any(
        resource == f"projects/{a.project}"
        and role in a.spec.project_roles
        and norm_member(member) == f"serviceaccount:{a.email.lower()}"
        for a in accounts(baseline).values()
    )


def _condition(value: Any) -> str | None:
    """A binding condition as one comparable string (None: unconditional)."""
    if not isinstance(value, dict) or not value:
        return None
    kept = {k: value[k] for k in ("expression", "title", "description") if value.get(k)}
    return json.dumps(kept, sort_keys=True) if kept else None


def _condition_fields(value: Any) -> tuple[tuple[str, str], ...] | None:
    """A finding's condition as a BindingDelta holds it (trustwatch.gcp.events)."""
    if not isinstance(value, dict):
        return None
    return tuple(sorted((k, v) for k, v in value.items() if isinstance(v, str) and v)) or None


def _bindings(policy: dict[str, Any]) -> list[dict[str, Any]]:
    found = policy.get("bindings") or []
    return [b for b in found if isinstance(b, dict)] if isinstance(found, list) else []


def _binding(policy: dict[str, Any], role: str, condition: str | None) -> dict[str, Any] | None:
    """The binding of `role` with exactly this condition (None: the unconditional one)."""
    return next(
        (
            b
            for b in _bindings(policy)
            if b.get("role") == role and _condition(b.get("condition")) == condition
        ),
        None,
    )


def _members(binding: dict[str, Any] | None, member: str) -> list[str]:
    """The members of the binding that are `member` (IAM members compare in any case)."""
    if binding is None:
        return []
    wanted = norm_member(member)
    return [
        m for m in binding.get("members") or [] if isinstance(m, str) and norm_member(m) == wanted
    ]


def _shown_binding(
    binding: dict[str, Any], without: list[str] | None = None
) -> dict[str, Any] | None:
    members = [m for m in binding.get("members") or [] if m not in (without or [])]
    if not members:
        return None  # the binding is dropped
    shown: dict[str, Any] = {"role": binding.get("role"), "members": members}
    if binding.get("condition"):
        shown["condition"] = binding["condition"]
    return shown


def _without(
    policy: dict[str, Any], role: str, member: str, condition: str | None
) -> dict[str, Any] | None:
    """The policy with `member` out of that one binding (None: it is not there)."""
    narrowed = copy.deepcopy(policy)
    binding = _binding(narrowed, role, condition)
    found = _members(binding, member)
    if binding is None or not found:
        return None
    binding["members"] = [m for m in binding["members"] if m not in found]
    if not binding["members"]:
        narrowed["bindings"] = [b for b in narrowed["bindings"] if b is not binding]
    if any(b.get("condition") for b in _bindings(narrowed)):
        narrowed["version"] = POLICY_VERSION  # conditions need version 3
    return narrowed
