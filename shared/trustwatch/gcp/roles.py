"""What a GCP role can do to the watched identities, judged by its permissions.

Predefined roles are looked up in `data/role_permissions.json`, a table the maintainers
transcribed from Google Cloud's own documentation (IAM, Resource Manager and Cloud Storage
pages; content CC BY 4.0, attributed in the file): for each role, the watched permissions
below that a page states it holds, and the page(s) it was read from (`source`). Roles the
pages read did not settle are not in the table (the file's `not_transcribed` says why).

A predefined role outside the table is judged by its id, so the tool stays conservative
without calling every unlisted role a threat:

- `roles/owner`, `roles/editor`, any `*Admin` / `.admin` role under `iam.`,
  `resourcemanager.` or `storage.`, and any role whose id names `serviceAccount`,
  `TokenCreator`, `workloadIdentity` or `serviceAgent` are *unknown*: the rules treat them
  as "may impersonate" (a high finding, "permissions unknown"), never as bucket access;
- every other predefined role (`roles/logging.logWriter`, `roles/compute.viewer`, a new
  `roles/iam.fooViewer`, ...) is taken to hold none of the watched permissions.

Custom roles are known only through the baseline (`gcp.projects.<id>.custom_roles.<name>.
permissions`); a custom role the baseline does not pin is *unknown* too. To correct or
extend the table, add the role with the page that states its permissions; a
`gcloud iam roles describe ROLE --format=json` of your own account is a good cross-check.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources

from trustwatch.baseline import Baseline

# Permissions that let a holder act as a service account, mint a credential for it, or
# grant itself either (setIamPolicy on the account or on a node above it).
# https://cloud.google.com/iam/docs/service-account-permissions
# https://cloud.google.com/iam/docs/service-account-impersonation
IMPERSONATION_PERMISSIONS = frozenset(
    {
        "iam.serviceAccounts.getAccessToken",
        "iam.serviceAccounts.actAs",
        "iam.serviceAccounts.signBlob",
        "iam.serviceAccounts.signJwt",
        "iam.serviceAccounts.implicitDelegation",
        "iam.serviceAccounts.getOpenIdToken",
        "iam.serviceAccountKeys.create",
        "iam.serviceAccounts.setIamPolicy",
        "resourcemanager.projects.setIamPolicy",
        "resourcemanager.folders.setIamPolicy",
        "resourcemanager.organizations.setIamPolicy",
        # an HMAC key is a long-lived Cloud Storage credential of the account
        # https://cloud.google.com/storage/docs/authentication/hmackeys
        "storage.hmacKeys.create",
    }
)
# Permissions to read or write a bucket's objects or change its access control: granted on
# a project, folder or organization they reach every bucket below it (policy inheritance).
# Listing object names alone (storage.objects.list, e.g. roles/iam.securityReviewer) is not.
# https://cloud.google.com/storage/docs/access-control/iam-permissions
BUCKET_PERMISSIONS = frozenset(
    {
        "storage.objects.get",
        "storage.objects.create",
        "storage.objects.delete",
        "storage.objects.update",
        "storage.objects.setIamPolicy",
        "storage.buckets.setIamPolicy",
        "storage.buckets.update",
        "storage.managedFolders.setIamPolicy",
    }
)
WATCHED = IMPERSONATION_PERMISSIONS | BUCKET_PERMISSIONS
DATA = "role_permissions.json"


# Predefined role ids that stay "unknown" (may impersonate) when the table lacks them.
# Case-insensitive: Google spells these words in both cases in role ids
# (roles/composer.ServiceAgentV2Ext holds iam.serviceAccounts.setIamPolicy).
_RISKY_ID = re.compile(
    r"roles/(owner|editor"
    r"|(iam|resourcemanager|storage)\.(admin|[A-Za-z]*Admin)"
    r"|.*(serviceAccount|TokenCreator|workloadIdentity|serviceAgent).*)",
    re.IGNORECASE,
)


@cache
def predefined() -> dict[str, frozenset[str]]:
    """Predefined role name -> the watched permissions it holds (often none)."""
    text = resources.files("trustwatch.gcp").joinpath("data", DATA).read_text("utf-8")
    table = json.loads(text)["roles"]
    return {name: frozenset(entry["permissions"]) for name, entry in table.items()}


def risky_id(role: str) -> bool:
    """A predefined role whose id alone says it may reach a service account's credentials
    or an IAM policy (see the module docstring)."""
    return _RISKY_ID.fullmatch(role) is not None


def permissions_of(role: str, baseline: Baseline) -> frozenset[str] | None:
    """The watched permissions `role` holds, None when unknown: a custom role the baseline
    does not pin, or a predefined role outside the table whose id looks risky."""
    if role.startswith("roles/"):
        held = predefined().get(role)
        if held is not None:
            return held
        return None if risky_id(role) else frozenset()
    for project_id, project in baseline.gcp.projects.items():
        for key, spec in project.custom_roles.items():
            full = key if "/" in key else f"projects/{project_id}/roles/{key}"
            if full == role:
                return None if spec.permissions is None else frozenset(spec.permissions) & WATCHED
    return None
