"""The typed Azure payloads (trustwatch.azure.changes): every change the events module
builds carries the payload its kind declares, immutable all the way down, and an Event Grid
change completed from the resource ARM returns carries the same payload as the Activity
Log record of the operation (so the same findings)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
import test_azure_attack_paths
import test_azure_rules
import test_azure_storage_entra
from conftest import corpus_files
from test_azure_events import changes_of, to_event_grid
from trustwatch.azure import changes as payloads
from trustwatch.azure.changes import (
    AccessConnectorIdentity,
    EntraDirectoryChange,
    FederatedCredential,
    LighthouseDelegation,
    ResourceRef,
    RoleAssignment,
    RoleDefinition,
    StorageAccountSettings,
)
from trustwatch.azure.entra import KINDS as ENTRA_KINDS
from trustwatch.azure.events import OPERATIONS, complete
from trustwatch.changes import Change, EventError
from trustwatch.intake import parse_document

# kind -> the payload of a change that is neither failed nor waiting for its body
PAYLOADS: dict[str, type] = {
    "role_assignment.created": RoleAssignment,
    "role_assignment.deleted": RoleAssignment,
    "access.elevated": RoleAssignment,
    "role_definition.written": RoleDefinition,
    "lighthouse.delegated": LighthouseDelegation,
    "lighthouse.assigned": LighthouseDelegation,
    "access_connector.written": AccessConnectorIdentity,
    "federated_credential.written": FederatedCredential,
    "access_connector.deleted": ResourceRef,
    "managed_identity.deleted": ResourceRef,
    "storage_account.written": StorageAccountSettings,
    "storage_account.keys_listed": ResourceRef,
    "entra.credential_added": EntraDirectoryChange,
    "entra.owner_added": EntraDirectoryChange,
}
CASES = test_azure_rules.CASES + test_azure_attack_paths.CASES
STORAGE_CASES = test_azure_storage_entra.STORAGE_CASES
ENTRA_CASES = test_azure_storage_entra.ENTRA_CASES


def expected_payload(change: Change) -> type:
    return ResourceRef if change.failed or change.needs_enrichment else PAYLOADS[change.kind]


def every_change() -> Iterator[tuple[str, Change]]:
    """The changes of every rule case in every delivery shape, and of the corpus."""
    for case in CASES:
        for shape in case.shapes:
            for doc in test_azure_rules.documents(case, shape):
                for change in changes_of(doc):
                    yield f"{case.name} [{shape}]", change
    for case in STORAGE_CASES:
        for shape in case.shapes:
            for doc in test_azure_storage_entra.documents(case, shape):
                for change in changes_of(doc):
                    yield f"{case.name} [{shape}]", change
    for case in ENTRA_CASES:
        for shape in test_azure_storage_entra.ENTRA_SHAPES:
            for doc in test_azure_storage_entra.entra_documents(case, shape):
                for change in changes_of(doc):
                    yield f"{case.name} [{shape}]", change
    for path in corpus_files("azure"):
        for parsed in parse_document(json.loads(path.read_text()), path.name):
            for change in parsed.changes:
                yield path.name, change


def test_every_kind_declares_its_payload():
    assert set(PAYLOADS) == set(OPERATIONS.values()) | set(ENTRA_KINDS)


def test_payloads_are_frozen_slotted_dataclasses():
    classes = [
        c for c in vars(payloads).values() if isinstance(c, type) and dataclasses.is_dataclass(c)
    ]
    assert len(classes) == 11
    for cls in classes:
        assert cls.__dataclass_params__.frozen, cls  # type: ignore[attr-defined]
        assert "__slots__" in vars(cls), cls


def test_every_change_carries_its_kinds_payload():
    seen: set[str] = set()
    for where, change in every_change():
        assert type(change.payload) is expected_payload(change), (where, change)
        hash(change.payload)  # tuples, not lists: immutable all the way down
        assert bool(change.not_evaluated) == change.needs_enrichment, (where, change)
        seen.add(change.kind)
    assert seen == set(PAYLOADS)


def test_a_rule_reading_the_wrong_payload_is_told_so():
    (change, *_) = (c for _, c in every_change() if c.kind == "access_connector.written")
    with pytest.raises(TypeError, match="carries AccessConnectorIdentity, expected RoleAssignment"):
        change.payload_as(RoleAssignment)


def arm_answer(record: dict[str, Any]) -> Any:
    """What ARM returns for the resource: the response body the Success record logged."""
    body = record.get("properties", {}).get("responseBody")
    return json.loads(body) if isinstance(body, str) else None


def completions() -> Iterator[tuple[str, Change, Change]]:
    """(case, the Event Grid change completed from ARM's answer, the Success record's change)."""
    for case in CASES + STORAGE_CASES:
        success = case.records[-1]
        resource = arm_answer(success)
        if "grid" not in case.shapes or resource is None:
            continue
        (pending,) = changes_of(to_event_grid(success))
        if not pending.needs_enrichment:
            continue
        logged = changes_of(success)
        try:
            done = complete(pending, resource)
        except EventError:
            assert logged == [], case.name  # a PIM removal: skipped on both paths
            continue
        yield case.name, done, *logged


def test_completed_change_carries_the_payload_of_the_logged_one():
    count = 0
    for name, done, logged in completions():
        assert not done.needs_enrichment and done.not_evaluated == "", name
        assert type(done.payload) is PAYLOADS[done.kind], name
        assert done.payload == logged.payload, name
        # (not scope: an Event Grid event names its topic's subscription, which a change
        # at a management group keeps where the Activity Log record names none)
        assert (done.identity, done.name) == (logged.identity, logged.name), name
        count += 1
    assert count >= 20
