"""Azure built-in role names <-> definition GUIDs, and one way to compare role references.

Events name a role by full definition id (`/subscriptions/S/providers/Microsoft.Authorization/
roleDefinitions/GUID` or `/providers/…/GUID`), by bare GUID (with or without dashes, any
case) and the baseline by built-in name; `normalize_role` turns each into the lower-case GUID.
"""

from __future__ import annotations

import re

# Built-in role definition GUIDs are the same in every tenant and cloud.
BUILTIN_ROLES: dict[str, str] = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "Role Based Access Control Administrator": "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Blob Data Reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Queue Data Reader": "19e7f393-937e-4f77-808e-94535e297925",
    "Storage Account Contributor": "17d1049b-9a84-46fb-8f53-869881c3d3ab",
    "EventGrid EventSubscription Contributor": "428e0ff0-5e57-4d9c-a221-2c70d0e0a443",
    "Managed Identity Operator": "f1a07417-d97a-45cb-824c-7a7467783830",
    "Managed Identity Contributor": "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59",
}
ROLE_NAMES: dict[str, str] = {guid: name for name, guid in BUILTIN_ROLES.items()}
_BY_LOWER_NAME = {name.lower(): guid for name, guid in BUILTIN_ROLES.items()}

OWNER = BUILTIN_ROLES["Owner"]
CONTRIBUTOR = BUILTIN_ROLES["Contributor"]
USER_ACCESS_ADMINISTRATOR = BUILTIN_ROLES["User Access Administrator"]
# The privileged roles, as Azure's built-in roles page lists them ("Privileged administrator
# roles", https://learn.microsoft.com/en-us/azure/role-based-access-control/built-in-roles):
# Owner and Contributor act on everything at their scope (Contributor includes
# Microsoft.Storage/storageAccounts/listkeys/action, i.e. every blob of a storage account),
# User Access Administrator and RBAC Administrator can grant themselves any role there.
# Granted at a protected scope or any parent of it (resource group, subscription,
# management group, `/`), they reach the protected resource (Contract 3: critical).
PRIVILEGED = frozenset(
    {
        OWNER,  # 8e3af657-a8ff-443c-a75c-2fe8c4bcb635
        CONTRIBUTOR,  # b24988ac-6180-42a0-ab88-20f7382dd24c
        USER_ACCESS_ADMINISTRATOR,  # 18d7d88d-d35e-4fb5-a5c3-7773c20a72d9
        BUILTIN_ROLES["Role Based Access Control Administrator"],  # f58310d9-…-9e8d-f62e7b41a168
    }
)
# Storage roles that reach a protected storage account from a scope above it, since role
# assignments are inherited by every child scope
# (https://learn.microsoft.com/en-us/azure/role-based-access-control/scope-overview): the
# data roles read or write its blobs and queues, Storage Account Contributor lists its keys
# (Microsoft.Storage/storageAccounts/listkeys/action; built-in roles page, "Storage").
# Writers and key listers are critical like the privileged roles; readers are high.
STORAGE_WRITERS = frozenset(
    {
        BUILTIN_ROLES["Storage Blob Data Owner"],
        BUILTIN_ROLES["Storage Blob Data Contributor"],
        BUILTIN_ROLES["Storage Queue Data Contributor"],
        BUILTIN_ROLES["Storage Account Contributor"],
    }
)
STORAGE_READERS = frozenset(
    {BUILTIN_ROLES["Storage Blob Data Reader"], BUILTIN_ROLES["Storage Queue Data Reader"]}
)
REACH_PROTECTED_SCOPE = PRIVILEGED | STORAGE_WRITERS | STORAGE_READERS

# Roles that let their holder act as a user-assigned managed identity at or above it: the
# privileged ones, Managed Identity Operator (…/userAssignedIdentities/*/assign/action:
# attach it to a VM or app it controls) and Managed Identity Contributor (…/federated
# IdentityCredentials/write: trust an outside token issuer). Same page, "Identity" section.
ACTS_AS_IDENTITY = PRIVILEGED | {
    BUILTIN_ROLES["Managed Identity Operator"],
    BUILTIN_ROLES["Managed Identity Contributor"],
}

# role -> roles whose every action and data action it already grants (so holding the
# first, being given the second at the same scope grants nothing new)
_IMPLIES: dict[str, frozenset[str]] = {
    OWNER: frozenset({CONTRIBUTOR, BUILTIN_ROLES["Reader"], USER_ACCESS_ADMINISTRATOR}),
    CONTRIBUTOR: frozenset({BUILTIN_ROLES["Reader"], BUILTIN_ROLES["Storage Account Contributor"]}),
    BUILTIN_ROLES["Storage Blob Data Owner"]: frozenset(
        {BUILTIN_ROLES["Storage Blob Data Contributor"], BUILTIN_ROLES["Storage Blob Data Reader"]}
    ),
    BUILTIN_ROLES["Storage Blob Data Contributor"]: frozenset(
        {BUILTIN_ROLES["Storage Blob Data Reader"]}
    ),
    BUILTIN_ROLES["Storage Queue Data Contributor"]: frozenset(
        {BUILTIN_ROLES["Storage Queue Data Reader"]}
    ),
}

_GUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")


class UnknownRole(ValueError):
    """A role reference that is neither a definition id, a GUID nor a known built-in name."""


def normalize_guid(value: str) -> str:
    """`8E3AF657A8FF443CA75C2FE8C4BCB635` -> `8e3af657-a8ff-443c-a75c-2fe8c4bcb635`; else as is."""
    text = value.strip().lower()
    if _GUID.fullmatch(text):
        hexes = text.replace("-", "")
        return f"{hexes[:8]}-{hexes[8:12]}-{hexes[12:16]}-{hexes[16:20]}-{hexes[20:]}"
    return text


def is_guid(value: str) -> bool:
    return _GUID.fullmatch(value.strip().lower()) is not None


def normalize_role(ref: str) -> str:
    """The lower-case definition GUID of a role id, bare GUID or built-in role name."""
    text = ref.strip()
    last = text.rstrip("/").rsplit("/", 1)[-1] if "/" in text else text
    if _GUID.fullmatch(last.lower()):
        return normalize_guid(last)
    guid = _BY_LOWER_NAME.get(text.lower())
    if guid is None:
        raise UnknownRole(
            f"unknown Azure role {ref!r}: expected a role definition id, a GUID or a built-in "
            "role name (" + ", ".join(sorted(BUILTIN_ROLES)) + ")"
        )
    return guid


def role_name(guid: str) -> str:
    """The built-in name of a role GUID, or the GUID itself for custom roles."""
    return ROLE_NAMES.get(normalize_guid(guid), guid)


def grants_no_more_than(held: str, given: str) -> bool:
    """Does holding role `held` already grant everything role `given` does?"""
    return held == given or given in _IMPLIES.get(held, frozenset())
