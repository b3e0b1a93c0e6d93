"""The Terraform modules in deploy/: they parse, wire what the functions need, and grant no
more than the code calls. Parsed with python-hcl2 (no terraform, no cloud account); when a
terraform binary with a local AWS provider mirror is on the machine, the AWS module is also
`terraform validate`d."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
from conftest import DATA, ROOT
from trustwatch import clouds
from trustwatch.aws.bundle import AWS_PIP_TARGET
from trustwatch.intake import events_module
from trustwatch.package import WATCHED_FILE, watched_operations_json

DEPLOY = ROOT / "deploy"
CLOUDS = clouds.names()
MODULE_FILES = ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md")
CONTRACT5_ENV = [
    "TRUSTWATCH_BASELINE",
    "TRUSTWATCH_MIN_SEVERITY",
    "TRUSTWATCH_SLACK_WEBHOOK_URL",
    "TRUSTWATCH_TEAMS_WEBHOOK_URL",
    "TRUSTWATCH_WEBHOOK_URL",
    "TRUSTWATCH_WEBHOOK_SECRET",
    "TRUSTWATCH_SMTP_URL",
    "TRUSTWATCH_EMAIL_FROM",
    "TRUSTWATCH_EMAIL_TO",
]
STATE_ENV = {"aws": "TRUSTWATCH_STATE_TABLE", "azure": "TRUSTWATCH_STATE_URL"}
STATE_ENV["gcp"] = "TRUSTWATCH_STATE_URL"


def _clean(value: Any) -> Any:
    """python-hcl2 keeps HCL quotes on keys and strings and adds markers: drop them."""
    if isinstance(value, dict):
        return {_unquote(k): _clean(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return _unquote(value) if isinstance(value, str) else value


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


@cache
def module(cloud: str) -> dict[str, Any]:
    """All .tf files of a module merged: {"resource": {type: {name: body}}, "variable": …}."""
    merged: dict[str, Any] = {}
    for path in sorted((DEPLOY / cloud).glob("*.tf")):
        with path.open() as handle:
            doc = _clean(hcl2.load(handle))
        for kind, blocks in doc.items():
            if kind in ("resource", "data"):
                for block in blocks:
                    for rtype, named in block.items():
                        merged.setdefault(kind, {}).setdefault(rtype, {}).update(named)
            elif kind in ("variable", "output"):
                for block in blocks:
                    merged.setdefault(kind, {}).update(block)
            elif kind == "locals":
                for block in blocks:
                    merged.setdefault("locals", {}).update(block)
            else:
                merged.setdefault(kind, []).extend(blocks)
    return merged


def resource(cloud: str, rtype: str, name: str | None = None) -> dict[str, Any]:
    named = module(cloud)["resource"][rtype]
    if name is None:
        (only,) = named.values()
        return only
    return named[name]


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    (only,) = body[name]
    return only


# -- every module ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", sorted(DEPLOY.glob("*/*.tf")), ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_terraform_file_parses(path: Path) -> None:
    with path.open() as handle:
        assert hcl2.load(handle)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_module_has_its_files_and_documents_every_input(cloud: str) -> None:
    for name in MODULE_FILES:
        assert (DEPLOY / cloud / name).is_file(), f"deploy/{cloud}/{name}"
    mod = module(cloud)
    for name, body in {**mod["variable"], **mod["output"]}.items():
        assert body.get("description"), f"deploy/{cloud}: {name} has no description"
    for name in (
        "slack_webhook_url",
        "teams_webhook_url",
        "webhook_url",
        "webhook_secret",
        "smtp_url",
    ):
        assert mod["variable"][name].get("sensitive") is True, f"{cloud}: {name} not sensitive"
    readme = (DEPLOY / cloud / "README.md").read_text()
    for env in [*CONTRACT5_ENV, STATE_ENV[cloud]]:
        assert env in readme, f"deploy/{cloud}/README.md does not document {env}"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_module_pins_terraform_and_its_provider(cloud: str) -> None:
    (terraform,) = module(cloud)["terraform"]
    assert terraform["required_version"].startswith(">=")
    (providers,) = terraform["required_providers"]
    (spec,) = providers.values()
    assert spec["source"].startswith("hashicorp/") and "<" in spec["version"]


@pytest.mark.parametrize("cloud", CLOUDS)
def test_module_sets_every_setting_the_function_reads(cloud: str) -> None:
    text = (DEPLOY / cloud / "main.tf").read_text()
    for env in [*CONTRACT5_ENV, STATE_ENV[cloud]]:
        assert env in text, f"deploy/{cloud}/main.tf never sets {env}"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_module_deploys_the_bundle_trustwatch_package_builds(cloud: str) -> None:
    assert f"dist/trustwatch-{cloud}.zip" in (DEPLOY / cloud / "main.tf").read_text()


@pytest.mark.parametrize("cloud", CLOUDS)
def test_module_routes_the_operations_the_code_watches(cloud: str) -> None:
    """deploy/<cloud>/watched_operations.json is the code's list, not a hand copy: the
    Terraform reads it, `trustwatch package` rewrites it."""
    path = DEPLOY / cloud / WATCHED_FILE
    assert path.read_text() == watched_operations_json(cloud), (
        f"{path} is stale: run `trustwatch package {cloud}` (it rewrites the file)"
    )
    assert f'file("${{path.module}}/{WATCHED_FILE}")' in (DEPLOY / cloud / "main.tf").read_text()


# -- AWS -------------------------------------------------------------------------------------

# The calls the responder must see whatever else changes (a floor, not the list itself:
# that comes from trustwatch.aws.events via watched_operations.json).
WATCHED_AWS_CALLS = {
    "UpdateAssumeRolePolicy",
    "CreateRole",
    "DeleteRole",
    "AttachRolePolicy",
    "DetachRolePolicy",
    "PutRolePolicy",
    "DeleteRolePolicy",
    "CreatePolicyVersion",
    "SetDefaultPolicyVersion",
    "PutRolePermissionsBoundary",
    "DeleteRolePermissionsBoundary",
    "AddRoleToInstanceProfile",
    "RemoveRoleFromInstanceProfile",
    "DeleteInstanceProfile",
    "AssumeRole",
    "AssumeRoleWithSAML",  # backdoors in use (aws.assume_role.unexpected_principal)
    "AssumeRoleWithWebIdentity",
    "CreateFunction20150331",  # a function run as the responder's role (Lambda versions
    "UpdateFunctionConfiguration20150331v2",  # its eventNames in CloudTrail)
}


def _quoted(expression: str) -> set[str]:
    return set(re.findall(r'"([^"]+)"', expression))


def test_aws_rule_matches_the_watched_calls_from_both_sources() -> None:
    rule = resource("aws", "aws_cloudwatch_event_rule")
    pattern = rule["event_pattern"]
    assert pattern.startswith("${jsonencode(")
    assert "AWS API Call via CloudTrail" in _quoted(pattern)
    assert "keys(local.watched)" in pattern and "flatten(values(local.watched))" in pattern
    assert module("aws")["locals"]["watched"].startswith("${jsondecode(file(")
    watched = clouds.get("aws").watched_operations()
    assert set(watched) == {
        "iam.amazonaws.com",
        "sts.amazonaws.com",
        "s3.amazonaws.com",
        "lambda.amazonaws.com",  # a function given the responder's role
    }
    assert {n for names in watched.values() for n in names} >= WATCHED_AWS_CALLS
    # AssumeRole is a read-only management event: delivered only in this state.
    assert rule["state"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
    target = resource("aws", "aws_cloudwatch_event_target")
    assert "aws_lambda_function.responder.arn" in target["arn"]
    assert "aws_sqs_queue.dead_letter.arn" in block(target, "dead_letter_config")["arn"]
    permission = resource("aws", "aws_lambda_permission")
    assert permission["principal"] == "events.amazonaws.com"
    assert "aws_cloudwatch_event_rule.identity_changes.arn" in permission["source_arn"]


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_watched_operation_is_one_the_parser_reads(cloud: str) -> None:
    """What deploy/ routes is never dropped as unwatched by the cloud's parser."""
    events = events_module(cloud)
    for source, operations in clouds.get(cloud).watched_operations().items():
        for operation in operations:
            outcome = _parse_minimal(cloud, events, source, operation)
            reason = getattr(outcome, "reason", "")
            assert "not a watched" not in reason and "not an identity" not in reason, (
                f"{cloud}: {source} {operation} is routed but skipped: {reason}"
            )


def _parse_minimal(cloud: str, events: Any, source: str, operation: str) -> Any:
    """A bare record of the operation in the cloud's audit-log shape."""
    from trustwatch.changes import EventError

    record: dict[str, Any]
    if cloud == "aws":
        record = {"eventSource": source, "eventName": operation, "awsRegion": "us-east-1"}
        record |= {"eventVersion": "1.08", "recipientAccountId": "111122223333"}
    elif cloud == "azure":
        record = {"operationName": operation.upper(), "resultType": "Success"}
        record |= {"resourceId": "/subscriptions/0/x", "category": "Administrative"}
        record |= {"time": "2026-01-01T00:00:00Z", "properties": {}}
    else:
        proto = {"@type": "type.googleapis.com/google.cloud.audit.AuditLog"}
        method = operation if "." in operation else f"google.x.v1.{operation}"  # a whole name
        proto |= {"serviceName": source, "methodName": method}
        record = {"protoPayload": proto, "logName": "projects/p/logs/x", "resource": {}}
    try:
        return events.parse(record)
    except EventError as exc:  # malformed for lack of fields, but not unwatched
        return exc


def test_aws_lambda_matches_the_vendored_wheels() -> None:
    function = resource("aws", "aws_lambda_function")
    target = dict(zip(AWS_PIP_TARGET[::2], AWS_PIP_TARGET[1::2], strict=False))
    assert function["runtime"] == f"python{target['--python-version']}"
    assert function["architectures"] == ["x86_64"]
    assert target["--platform"].endswith("_x86_64")
    assert function["handler"] == "handler.lambda_handler"
    assert "filebase64sha256" in function["source_code_hash"]


def test_aws_state_table_and_failure_destination() -> None:
    table = resource("aws", "aws_dynamodb_table")
    assert table["hash_key"] == "id" and table["billing_mode"] == "PAY_PER_REQUEST"
    assert block(table, "attribute") == {"name": "id", "type": "S"}
    assert block(table, "ttl") == {"attribute_name": "expires", "enabled": True}
    invoke = resource("aws", "aws_lambda_function_event_invoke_config")
    on_failure = block(block(invoke, "destination_config"), "on_failure")
    assert "aws_sqs_queue.dead_letter.arn" in on_failure["destination"]
    assert "max_event_age" in invoke["maximum_event_age_in_seconds"]


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    """Static and dynamic statements of an aws_iam_policy_document."""
    found = list(policy.get("statement", []))
    for dynamic in policy.get("dynamic", []):
        for name, body in dynamic.items():
            if name == "statement":
                found.append(block(body, "content"))
    return found


# Actions without resource-level permissions: their statement's resource can only be "*"
# (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html,
# https://docs.aws.amazon.com/service-authorization/latest/reference/list_awscloudtrail.html).
NO_RESOURCE_LEVEL = {
    "iam:GetAccountAuthorizationDetails",
    "cloudtrail:LookupEvents",
    "s3:GetAccountPublicAccessBlock",  # https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html
}


def test_aws_function_role_grants_only_what_the_code_calls() -> None:
    from trustwatch.aws import bucket_state, catchup, state

    policy = module("aws")["data"]["aws_iam_policy_document"]["function"]
    # remediation's statements come from a map (test_aws_remediation_grants_…)
    statements = [s for s in _statements(policy) if not _remediation_statement(s)]
    actions = [a for s in statements for a in s["actions"]]
    assert not [a for a in actions if "*" in a], actions
    sweep_actions = {*state.READ_ACTIONS, state.ASSUME_ACTION, catchup.LOOKUP_ACTION}
    sweep_actions |= {*bucket_state.READ_ACTIONS, bucket_state.ACCOUNT_READ_ACTION}
    assert set(actions) == sweep_actions | {"lambda:InvokeFunction"} | {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "sqs:SendMessage",
        "s3:GetObject",
        "secretsmanager:GetSecretValue",
        "ssm:GetParameter",
        "kms:Decrypt",
        "ses:SendEmail",
        "ses:SendRawEmail",
    }
    for statement in statements:
        assert statement.get("effect", "Allow") == "Allow"
        resources = statement["resources"]
        if set(statement["actions"]) <= NO_RESOURCE_LEVEL:
            continue
        assert resources != ["*"] and "*" not in resources, statement
    by_sid = {s["sid"]: s for s in statements}
    # the fan-out invokes the function itself, nothing else; other accounts only through
    # the configured read role
    assert by_sid["SweepFanOut"]["resources"] == ["${local.function_arn}"]
    assert ":function:${var.name}" in module("aws")["locals"]["function_arn"]
    assert by_sid["SweepOtherAccounts"]["resources"] == [
        '${replace(var.sweep_role_arn_template, "{account}", "*")}'
    ]
    assert "aws_dynamodb_table.state.arn" in by_sid["StateTable"]["resources"][0]
    assert "aws_sqs_queue.dead_letter.arn" in by_sid["OnFailureDestination"]["resources"][0]
    assert "aws_cloudwatch_log_group.function.arn" in by_sid["Logs"]["resources"][0]
    # The role carries no managed policy (AWSLambdaBasicExecutionRole would add logs:* on *).
    assert "aws_iam_role_policy_attachment" not in module("aws")["resource"]


def test_aws_sweep_schedule_invokes_the_function_with_the_fan_out_message() -> None:
    from trustwatch.sweep import SWEEP_MESSAGE, scheduled

    schedule = resource("aws", "aws_scheduler_schedule", "sweep")
    assert schedule["schedule_expression"] == "${var.sweep_schedule}"
    assert module("aws")["variable"]["sweep_schedule"]["default"] == "rate(1 hour)"
    target = block(schedule, "target")
    assert "aws_lambda_function.responder.arn" in target["arn"]
    assert "aws_iam_role.scheduler[0].arn" in target["role_arn"]
    assert "aws_sqs_queue.dead_letter.arn" in block(target, "dead_letter_config")["arn"]
    message = {"trustwatch": SWEEP_MESSAGE}
    assert target["input"] == '${jsonencode({trustwatch = "' + SWEEP_MESSAGE + '"})}'
    found = scheduled(message)
    assert found is not None and found.unit is None  # the fan-out
    policy = module("aws")["data"]["aws_iam_policy_document"]["scheduler"]
    grants = {s["sid"]: (s["actions"], s["resources"]) for s in _statements(policy)}
    assert grants["InvokeFunction"] == (
        ["lambda:InvokeFunction"],
        ["${aws_lambda_function.responder.arn}"],
    )
    assert grants["DeadLetter"][0] == ["sqs:SendMessage"]
    environment = (DEPLOY / "aws" / "main.tf").read_text()
    for env in ("TRUSTWATCH_AWS_SWEEP_ROLE", "TRUSTWATCH_AWS_SWEEP_EXTERNAL_ID"):
        assert env in environment


def _remediation_statement(statement: dict[str, Any]) -> bool:
    return statement["sid"] == "${statement.key}" or statement["sid"].startswith("Remediat")


def test_aws_remediation_grants_reads_always_and_the_code_writes_only_when_enabled() -> None:
    """trustwatch.aws.remediate's READ_ACTIONS are granted always (a dry run plans from
    them), its WRITE_ACTIONS only with remediation_enabled, each on the resources it takes:
    the role, instance-profile or policy ARNs of the baseline (or the account)."""
    from trustwatch.aws.remediate import PASS_ROLE, READ_ACTIONS, WRITE_ACTIONS

    mod = module("aws")
    assert mod["variable"]["remediation_enabled"]["default"] is False
    table = mod["locals"]["remediation_statements"]
    reads = [a for s in table.values() if not s["write"] for a in s["actions"]]
    writes = [a for s in table.values() if s["write"] for a in s["actions"]]
    assert sorted(reads) == sorted(READ_ACTIONS)
    assert sorted(writes) == sorted(WRITE_ACTIONS)
    kinds = {"roles", "profiles", "policies", "buckets"}
    for sid, statement in table.items():
        kind = statement["resources"].removeprefix("${local.remediation_").removesuffix("}")
        assert kind in kinds, sid
        for action in statement["actions"]:  # each action on its own resource type
            assert ("Policy" in action and "Role" not in action) == (kind == "policies"), action
            assert ("InstanceProfile" in action) == (kind == "profiles"), action
            assert action.startswith("s3:") == (kind == "buckets"), action
    granted = mod["locals"]["remediation_granted"]
    assert "(var.remediation_enabled || !s.write)" in granted  # writes need the switch
    policy = mod["data"]["aws_iam_policy_document"]["function"]
    dynamic = [s for s in _statements(policy) if _remediation_statement(s)]
    by_sid = {s["sid"]: s for s in dynamic}
    assert by_sid["${statement.key}"]["actions"] == "${statement.value.actions}"
    pass_role = by_sid["RemediatePassRoleToInstanceProfiles"]
    assert pass_role["actions"] == [PASS_ROLE]
    assert pass_role["resources"] == "${local.remediation_roles}"
    (condition,) = pass_role["condition"]
    assert condition["variable"] == "iam:AssociatedResourceArn"
    (when,) = [d["statement"]["for_each"] for d in policy["dynamic"] if "statement" in d
               and block(d["statement"], "content")["sid"] == "RemediatePassRoleToInstanceProfiles"]  # fmt: skip
    assert when.startswith("${var.remediation_enabled && ")
    assume = by_sid["RemediationAssumeRole"]  # findings of other accounts
    assert assume["actions"] == ["sts:AssumeRole"]
    assert assume["resources"] == [
        '${replace(var.remediation_role_arn_template, "{account}", "*")}'
    ]
    setting = mod["locals"]["plain_setting"]
    assert (
        'TRUSTWATCH_REMEDIATION = var.remediation_enabled ? "apply" : (var.remediation_plan ? "dry-run" : "off")'
        in setting
    )
    from trustwatch.aws.remediate import ROLE_TEMPLATE_ENV

    assert f"{ROLE_TEMPLATE_ENV} = var.remediation_role_arn_template" in setting
    readme = (DEPLOY / "aws" / "README.md").read_text()
    assert "remediation_enabled" in readme and "actors.responder" in readme


def test_aws_secrets_are_sensitive_or_secret_store_references() -> None:
    variables = module("aws")["variable"]
    assert "secretsmanager" in variables["secret_arns"]["validation"][0]["condition"]
    text = (DEPLOY / "aws" / "main.tf").read_text()
    # The references the function resolves (trustwatch.alerts.secrets).
    from trustwatch.alerts.secrets import ENV_REFERENCE_PREFIXES

    assert '"aws-secret:${v}"' in text and '"ssm:${v}"' in text
    assert {"aws-secret:", "ssm:"} <= set(ENV_REFERENCE_PREFIXES)


# -- Azure -----------------------------------------------------------------------------------


def test_azure_event_grid_subscription_filters_identity_operations() -> None:
    topic = resource("azure", "azurerm_eventgrid_system_topic")
    assert topic["topic_type"] == "Microsoft.Resources.Subscriptions"
    sub = resource("azure", "azurerm_eventgrid_system_topic_event_subscription")
    assert sub["included_event_types"] == [
        "Microsoft.Resources.ResourceWriteSuccess",
        "Microsoft.Resources.ResourceDeleteSuccess",
    ]
    contains = block(block(sub, "advanced_filter"), "string_contains")
    assert contains["key"] == "data.operationName"
    assert "watched_operations" in contains["values"]
    assert module("azure")["locals"]["watched_operations"].startswith(
        "${flatten(values(jsondecode("
    )
    watched = [op for ops in clouds.get("azure").watched_operations().values() for op in ops]
    # Event Grid string filters ignore case (learn.microsoft.com/azure/event-grid/event-filtering)
    assert "microsoft.authorization/roleassignments/write" in watched
    endpoint = block(sub, "azure_function_endpoint")
    assert endpoint["function_id"].endswith("/functions/on_event_grid")
    dead = block(sub, "storage_blob_dead_letter_destination")
    assert "azurerm_storage_container.dead_letter.name" in dead["storage_blob_container_name"]


def test_azure_activity_log_streams_administrative_events_to_the_hub() -> None:
    setting = resource("azure", "azurerm_monitor_diagnostic_setting")
    assert block(setting, "enabled_log") == {"category": "Administrative"}
    assert "subscription_scope" in setting["target_resource_id"]
    listen = resource("azure", "azurerm_eventhub_authorization_rule", "function_listens")
    assert (listen["listen"], listen["send"], listen["manage"]) == (True, False, False)
    settings = module("azure")["locals"]["app_settings"]
    assert "function_listens.primary_connection_string" in settings


def test_azure_entra_audit_logs_are_an_optional_stream_to_the_same_hub() -> None:
    """azure.sp.* read the tenant's audit log (category AuditLogs), which only a tenant-wide
    diagnostic setting exports ("Stream Microsoft Entra logs to an event hub",
    https://learn.microsoft.com/en-us/entra/identity/monitoring-health/howto-stream-logs-to-event-hub)."""
    variable = module("azure")["variable"]["entra_audit_logs"]
    assert (variable["type"], variable["default"]) == ("bool", False)
    setting = resource("azure", "azurerm_monitor_aad_diagnostic_setting", "entra_audit_logs")
    assert setting["count"] == "${var.entra_audit_logs ? 1 : 0}"
    assert block(setting, "enabled_log") == {"category": "AuditLogs"}
    # the hub and rule the Activity Log uses: on_activity_log reads both
    activity = resource("azure", "azurerm_monitor_diagnostic_setting", "activity_log")
    assert setting["eventhub_name"] == activity["eventhub_name"]
    assert setting["eventhub_authorization_rule_id"] == activity["eventhub_authorization_rule_id"]


def test_azure_actions_reach_the_function_through_the_hub_only() -> None:
    """The Event Grid subscription carries Write and Delete events: the watched actions
    (storage keys, elevateAccess) come from the Activity Log, which exports them all."""
    watched = [op for ops in clouds.get("azure").watched_operations().values() for op in ops]
    actions = [op for op in watched if op.endswith("/action")]
    assert "microsoft.storage/storageaccounts/listkeys/action" in actions
    assert "microsoft.storage/storageaccounts/write" in watched
    text = (DEPLOY / "azure" / "main.tf").read_text()
    assert "listKeys, regenerateKey, listAccountSas and listServiceSas" in text
    # Event Grid: at most 25 values in one string filter (event-filtering, "Limitations")
    assert len(watched) <= 25


def test_azure_identity_has_only_reader_and_table_data_contributor() -> None:
    assignments = module("azure")["resource"]["azurerm_role_assignment"]
    roles = {
        name: body.get("role_definition_name") or body["role_definition_id"]
        for name, body in assignments.items()
        if name != "remediation"  # its own custom role, when enabled: the test below
    }
    assert roles == {
        "reader": "Reader",
        "dedup_table": "Storage Table Data Contributor",
        "key_vault_secret": "Key Vault Secrets User",  # one per named secret
        "baseline": "Storage Blob Data Reader",  # only when a blob baseline is named
        # the sweep's reads, in each swept subscription (next test)
        "sweep_reader": "${azurerm_role_definition.sweep_reader.role_definition_resource_id}",
    }
    assert assignments["reader"]["scope"] == "${local.subscription_scope}"
    assert "/tableServices/default/tables/" in assignments["dedup_table"]["scope"]
    assert "/secrets/" in assignments["key_vault_secret"]["scope"]
    assert "count" in assignments["baseline"] and "for_each" in assignments["key_vault_secret"]


def test_azure_sweep_reader_grants_exactly_the_reads_the_state_part_makes() -> None:
    from trustwatch.azure.state import READ_PERMISSIONS

    role = resource("azure", "azurerm_role_definition", "sweep_reader")
    permissions = block(role, "permissions")
    assert sorted(permissions["actions"]) == sorted(READ_PERMISSIONS)
    assert permissions.get("not_actions") == [] and "data_actions" not in permissions
    assert "local.sweep_subscriptions" in role["assignable_scopes"]
    assignment = resource("azure", "azurerm_role_assignment", "sweep_reader")
    assert assignment["for_each"] == "${toset(local.sweep_subscriptions)}"
    assert assignment["scope"] == "/subscriptions/${each.value}"
    assert "identity[0].principal_id" in assignment["principal_id"]
    default = module("azure")["locals"]["sweep_subscriptions"]
    assert "[local.subscription_id]" in default  # null: the deployment's own subscription


def test_azure_schedule_and_queue_are_the_ones_the_sweep_functions_bind() -> None:
    """function_app.py's timer reads %TRUSTWATCH_SWEEP_SCHEDULE%, both queue bindings
    %TRUSTWATCH_SWEEP_QUEUE% on the app's own storage account (AzureWebJobsStorage)."""
    settings = module("azure")["locals"]["app_settings"]  # one merge() expression
    assert re.search(r"TRUSTWATCH_SWEEP_SCHEDULE\s*=\s*var\.sweep_schedule\b", settings)
    assert re.search(r"TRUSTWATCH_SWEEP_QUEUE\s*=\s*azurerm_storage_queue\.sweep\.name\b", settings)
    queue = resource("azure", "azurerm_storage_queue", "sweep")
    assert queue["storage_account_id"] == "${azurerm_storage_account.this.id}"
    assert module("azure")["locals"]["sweep_queue"] == "trustwatch-sweep"
    # NCRONTAB with seconds: six fields
    schedule = module("azure")["variable"]["sweep_schedule"]["default"]
    assert len(schedule.split()) == 6
    source = (ROOT / "functions" / "azure" / "function_app.py").read_text()
    assert 'schedule="%TRUSTWATCH_SWEEP_SCHEDULE%"' in source
    assert source.count('queue_name="%TRUSTWATCH_SWEEP_QUEUE%"') == 2
    assert 'SWEEP_QUEUE_CONNECTION = "AzureWebJobsStorage"' in source


def test_azure_remediation_grants_only_the_delete_the_code_calls_when_enabled() -> None:
    """Disabled (the default): no custom role, no assignment of it, a dry run. Enabled: one
    custom role holding exactly trustwatch.azure.remediate.WRITE_ACTIONS, assigned at the
    remediation scopes (the subscription unless named), and TRUSTWATCH_REMEDIATION=apply."""
    from trustwatch.azure.remediate import READ_ACTIONS, WRITE_ACTIONS

    doc = module("azure")
    enabled = doc["variable"]["remediation_enabled"]
    assert enabled["type"] == "bool" and enabled["default"] is False
    assert doc["variable"]["remediation_scopes"]["default"] is None
    local = doc["locals"]
    assert local["remediation_actions"] == list(WRITE_ACTIONS)
    # no scope at all unless enabled; the subscription when no scope is named
    assert re.fullmatch(
        r"\$\{var\.remediation_enabled \? \(var\.remediation_scopes == null \? "
        r"\[local\.subscription_scope\] : var\.remediation_scopes\) : \[\]\}",
        local["remediation_scopes"],
    )
    definition = resource("azure", "azurerm_role_definition", "remediation")
    assert definition["count"] == "${var.remediation_enabled ? 1 : 0}"
    assert definition["assignable_scopes"] == "${local.remediation_scopes}"
    (permissions,) = definition["permissions"]
    assert permissions == {"actions": "${local.remediation_actions}", "not_actions": []}
    assignment = doc["resource"]["azurerm_role_assignment"]["remediation"]
    assert assignment["for_each"] == "${toset(local.remediation_scopes)}"
    assert assignment["scope"] == "${each.value}"
    assert "azurerm_role_definition.remediation[0]" in assignment["role_definition_id"]
    assert "identity[0].principal_id" in assignment["principal_id"]
    settings = local["app_settings"]
    assert (
        'TRUSTWATCH_REMEDIATION = var.remediation_enabled ? "apply" : (var.remediation_plan ? "dry-run" : "off")'
        in settings
    )
    # what the plans read comes with Reader (`*/read`) at the subscription, granted either way
    assert READ_ACTIONS and all(a.endswith("/read") for a in READ_ACTIONS)
    assert doc["resource"]["azurerm_role_assignment"]["reader"]["role_definition_name"] == (
        "Reader"
    )
    # the module's custom roles: this one and the sweep's reads (tested above)
    assert set(doc["resource"].get("azurerm_role_definition", {})) == {
        "remediation",
        "sweep_reader",
    }


def test_azure_function_app_runs_python_311_with_a_managed_identity() -> None:
    app = resource("azure", "azurerm_linux_function_app")
    stack = block(block(app, "site_config"), "application_stack")
    assert stack["python_version"] == "3.11"
    assert block(app, "identity")["type"] == "SystemAssigned"
    assert "bundle_path" in app["zip_deploy_file"]
    text = (DEPLOY / "azure" / "main.tf").read_text()
    assert "@Microsoft.KeyVault(" in text


# -- GCP -------------------------------------------------------------------------------------

# Methods the responder must see whatever else changes (a floor: the list itself comes from
# trustwatch.gcp.events via watched_operations.json).
WATCHED_GCP_METHODS = {
    "SetIamPolicy",
    "google.iam.admin.v1.SetIAMPolicy",
    "storage.setIamPermissions",
    "google.iam.admin.v1.CreateServiceAccountKey",
    "google.iam.admin.v1.DeleteServiceAccount",
    "google.iam.admin.v1.DisableServiceAccount",
    "google.iam.admin.v1.UpdateRole",
    "google.iam.admin.v1.DeleteRole",
}


def _gcp_sink_matches(service: str, method: str) -> bool:
    """The sink filter's serviceName and methodName clauses, as deploy/gcp/main.tf builds
    them from watched_operations.json (checked against its locals below)."""
    watched = json.loads((DEPLOY / "gcp" / WATCHED_FILE).read_text())
    methods = list(dict.fromkeys(m for ms in watched.values() for m in ms))
    regex = "(?i)(^|[.])(" + "|".join(methods) + ")$"
    return service in watched and re.search(regex, method) is not None


def test_gcp_sink_filter_names_the_watched_methods() -> None:
    local = module("gcp")["locals"]
    assert local["watched_services"] == "${keys(local.watched)}"
    assert local["watched_methods_regex"] == (
        '(?i)(^|[.])(${join("|", distinct(flatten(values(local.watched))))})$'
    )
    assert 'protoPayload.methodName=~\\"${local.watched_methods_regex}\\"' in local["sink_filter"]
    services = {
        "cloudresourcemanager.googleapis.com",
        "iam.googleapis.com",
        "storage.googleapis.com",
    }
    for method in WATCHED_GCP_METHODS:
        service = (
            "storage.googleapis.com" if method.startswith("storage.") else "iam.googleapis.com"
        )
        if method == "SetIamPolicy":
            service = "cloudresourcemanager.googleapis.com"
        assert service in services and _gcp_sink_matches(service, method), method
    assert _gcp_sink_matches(
        "cloudresourcemanager.googleapis.com",
        "google.cloud.resourcemanager.v3.Folders.SetIamPolicy",
    )
    assert not _gcp_sink_matches("iam.googleapis.com", "google.iam.admin.v1.GetIamPolicy")
    assert not _gcp_sink_matches("iam.googleapis.com", "google.iam.admin.v1.NotSetIamPolicy")
    # named by its whole methodName (FULL_METHODS): HMAC keys of a baseline account
    assert _gcp_sink_matches("storage.googleapis.com", "storage.hmacKeys.create")
    assert _gcp_sink_matches("storage.googleapis.com", "storage.hmacKeys.update")
    for sink in ("google_logging_project_sink", "google_logging_organization_sink"):
        body = resource("gcp", sink)
        assert body["filter"] == "${local.sink_filter}"
        assert "google_pubsub_topic.audit.id" in body["destination"]
    assert resource("gcp", "google_logging_organization_sink")["include_children"] is True
    publisher = resource("gcp", "google_pubsub_topic_iam_member", "sink_publishes")
    assert publisher["role"] == "roles/pubsub.publisher"
    assert "sink_writer" in publisher["member"]


def test_gcp_sink_filter_matches_the_corpus_methods_it_should() -> None:
    """The filter's service and method lists, applied to the published audit entries."""
    from conftest import corpus_files

    matched = set()
    for path in corpus_files("gcp"):
        doc = json.loads(path.read_text())
        for entry in doc if isinstance(doc, list) else [doc]:
            proto = entry.get("protoPayload", {})
            if _gcp_sink_matches(proto.get("serviceName", ""), proto.get("methodName", "")):
                matched.add(path.name)
    assert any("setiampolicy" in n for n in matched)
    assert any("createserviceaccountkey" in n for n in matched)
    assert any("setiampermissions" in n for n in matched)
    assert not any("pubsub-createtopic" in n or "instancetemplates" in n for n in matched)


def test_gcp_function_and_trigger() -> None:
    function = resource("gcp", "google_cloudfunctions2_function")
    build = block(function, "build_config")
    assert (build["runtime"], build["entry_point"]) == ("python311", "on_audit_log")
    trigger = block(function, "event_trigger")
    assert trigger["event_type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert "google_pubsub_topic.audit.id" in trigger["pubsub_topic"]
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
    service = block(function, "service_config")
    assert "google_service_account.function.email" in service["service_account_email"]
    assert "dead_letter" in module("gcp")["resource"]["google_pubsub_topic"]


def test_gcp_function_identity_has_only_its_grants() -> None:
    from trustwatch.gcp import enrich, remediate

    res = module("gcp")["resource"]
    member = "google_service_account.function.email"
    grants = {
        (rtype, name, body["role"])
        for rtype, named in res.items()
        if rtype.endswith("_iam_member")
        for name, body in named.items()
        if member in body["member"]
    }
    assert grants == {
        ("google_storage_bucket_iam_member", "function_state", "roles/storage.objectUser"),
        ("google_storage_bucket_iam_member", "function_baseline", "roles/storage.objectViewer"),
        (
            "google_secret_manager_secret_iam_member",
            "function",
            "roles/secretmanager.secretAccessor",
        ),
        ("google_project_iam_member", "function_logs", "roles/logging.logWriter"),
        # the enricher's reads: on the project, or on the organization for an org sink
        (
            "google_project_iam_member",
            "function_reads",
            "${google_project_iam_custom_role.reader[0].id}",
        ),
        (
            "google_organization_iam_member",
            "function_reads",
            "${google_organization_iam_custom_role.reader[0].id}",
        ),
        # the writes, only with remediation_enabled (test_gcp_remediation_...)
        ("google_project_iam_member", "function_remediates", "${local.remediator_role}"),
        # the scheduled sweep's reads (test_gcp_sweep_schedule_and_its_reads)
        (
            "google_project_iam_member",
            "function_sweeps",
            "${google_project_iam_custom_role.sweeper[0].id}",
        ),
        (
            "google_organization_iam_member",
            "function_sweeps",
            "${google_organization_iam_custom_role.sweeper[0].id}",
        ),
        ("google_pubsub_topic_iam_member", "function_publishes", "roles/pubsub.publisher"),
    }
    state = res["google_storage_bucket_iam_member"]["function_state"]
    assert "state_prefix" in block(state, "condition")["expression"]
    # the custom roles hold exactly what trustwatch.gcp.enrich reads with, no more
    project_role = res["google_project_iam_custom_role"]["reader"]
    org_role = res["google_organization_iam_custom_role"]["reader"]
    project_reads = {p for read in enrich.PROJECT_READS for p in enrich.PERMISSIONS[read]}
    # what a remediation plan reads beyond them, in every mode (a dry run plans too)
    plan_reads = set(remediate.READ_PERMISSIONS)
    assert plan_reads == {"iam.serviceAccountKeys.get"}
    assert (
        set(project_role["permissions"]) - plan_reads
        == project_reads
        == {
            "resourcemanager.projects.getIamPolicy",
            "iam.serviceAccounts.getIamPolicy",
            "iam.serviceAccounts.get",
            "storage.buckets.getIamPolicy",
            # a bucket's settings after storage.buckets.update (gcp.bucket.public_access_opened)
            "storage.buckets.get",
            # an HMAC key's account after storage.hmacKeys.update (gcp.sa.key_created)
            "storage.hmacKeys.get",
        }
    )
    every_read = {p for permissions in enrich.PERMISSIONS.values() for p in permissions}
    assert set(org_role["permissions"]) == every_read | plan_reads
    assert every_read - project_reads == {
        "resourcemanager.folders.getIamPolicy",
        "resourcemanager.organizations.getIamPolicy",
    }
    # one of the two, by the sink's kind
    assert "organization_id == null ? 1 : 0" in project_role["count"]
    assert "organization_id == null ? 0 : 1" in org_role["count"]
    apis = module("gcp")["locals"]["apis"]
    assert "cloudresourcemanager.googleapis.com" in apis


def test_gcp_remediation_writes_only_when_enabled_and_exactly_what_the_code_calls() -> None:
    """remediation_enabled = false (the default): no write permission anywhere, dry run;
    true: a custom role holding exactly trustwatch.gcp.remediate's writes for the key action,
    granted on the remediation projects only, and TRUSTWATCH_REMEDIATION=apply."""
    from trustwatch.gcp import remediate

    gcp = module("gcp")
    variables, local, res = gcp["variable"], gcp["locals"], gcp["resource"]
    assert variables["remediation_enabled"]["default"] is False
    assert variables["remediation_key_action"]["default"] == "disable"
    # the writes the code calls, for each key action
    for action in remediate.KEY_ACTIONS:
        granted = {*local["remediation_permissions"], local["remediation_key_permission"][action]}
        assert granted == remediate.write_permissions(action), action
    assert remediate.write_permissions("disable") == {
        "resourcemanager.projects.setIamPolicy",
        "iam.serviceAccounts.setIamPolicy",
        "storage.buckets.setIamPolicy",
        "storage.buckets.update",
        "storage.hmacKeys.update",
        "iam.serviceAccountKeys.disable",
    }
    roles = [
        res["google_project_iam_custom_role"]["remediator"],
        res["google_organization_iam_custom_role"]["remediator"],
    ]
    for role in roles:
        assert role["count"].startswith("${var.remediation_enabled && var.organization_id")
        assert role["permissions"] == (
            "${concat(local.remediation_permissions, "
            "[local.remediation_key_permission[var.remediation_key_action]])}"
        )
    # granted on the remediation projects, an empty set unless enabled
    grant = res["google_project_iam_member"]["function_remediates"]
    assert grant["for_each"] == "${local.remediation_projects}"
    assert local["remediation_projects"].startswith("${var.remediation_enabled ? ")
    assert local["remediation_projects"].endswith(": toset([])}")
    # no write permission in the roles every deployment gets
    writes = remediate.write_permissions("disable") | remediate.write_permissions("delete")
    for reader in (
        res["google_project_iam_custom_role"]["reader"],
        res["google_organization_iam_custom_role"]["reader"],
    ):
        assert not writes & set(reader["permissions"])
    every_role = {
        p
        for rtype in ("google_project_iam_custom_role", "google_organization_iam_custom_role")
        for name, body in res[rtype].items()
        if name != "remediator"
        for p in body["permissions"]
    }
    assert not writes & every_role
    env = local["environment"]
    assert (
        'TRUSTWATCH_REMEDIATION = var.remediation_enabled ? "apply" : (var.remediation_plan ? "dry-run" : "off")'
        in env
    )
    assert "TRUSTWATCH_GCP_KEY_ACTION = var.remediation_key_action" in env


def test_gcp_sweep_schedule_and_its_reads() -> None:
    """Cloud Scheduler publishes the sweep message to the function's topic; the function
    may read exactly what trustwatch.gcp.state reads, and publish to that topic only.
    https://cloud.google.com/scheduler/docs/reference/rest/v1/projects.locations.jobs#pubsubtarget
    https://cloud.google.com/pubsub/docs/access-control#roles (roles/pubsub.publisher:
    pubsub.topics.publish)"""
    from trustwatch.gcp import state
    from trustwatch.sweep import SWEEP_MESSAGE, ScheduledSweep, scheduled

    res = module("gcp")["resource"]
    job = resource("gcp", "google_cloud_scheduler_job", "sweep")
    assert "var.sweep_schedule == null ? 0 : 1" in job["count"]
    assert job["schedule"] == "${var.sweep_schedule}"
    target = block(job, "pubsub_target")
    assert target["topic_name"] == "${google_pubsub_topic.audit.id}"
    # the message sweep.scheduled() reads as a fan-out, JSON then base64 (Pub/Sub data)
    assert target["data"] == f'${{base64encode(jsonencode({{trustwatch = "{SWEEP_MESSAGE}"}}))}}'
    assert scheduled({"trustwatch": SWEEP_MESSAGE}) == ScheduledSweep()
    assert module("gcp")["variable"]["sweep_schedule"]["default"] == "0 * * * *"
    environment = module("gcp")["locals"]["environment"]
    assert "TRUSTWATCH_SWEEP_TOPIC" in json.dumps(environment)
    assert "google_pubsub_topic.audit.id" in json.dumps(environment)
    publish = res["google_pubsub_topic_iam_member"]["function_publishes"]
    assert publish["topic"] == "${google_pubsub_topic.audit.name}"
    assert state.FAN_OUT_PERMISSIONS == ("pubsub.topics.publish",)
    reads = {p for permissions in state.PERMISSIONS.values() for p in permissions}
    assert reads == {
        "resourcemanager.projects.getIamPolicy",
        "iam.serviceAccounts.get",
        "iam.serviceAccounts.getIamPolicy",
        "iam.serviceAccountKeys.list",
        "storage.hmacKeys.list",
        "storage.buckets.getIamPolicy",
        "storage.buckets.get",
        "iam.roles.get",
        "logging.logEntries.list",
    }
    project_role = res["google_project_iam_custom_role"]["sweeper"]
    org_role = res["google_organization_iam_custom_role"]["sweeper"]
    assert set(project_role["permissions"]) == set(org_role["permissions"]) == reads
    assert "organization_id == null ? 1 : 0" in project_role["count"]
    assert "organization_id == null ? 0 : 1" in org_role["count"]
    assert "cloudscheduler.googleapis.com" in module("gcp")["locals"]["apis"]


# -- terraform itself, where the machine has it ----------------------------------------------

TF_PLUGINS = Path(os.environ.get("TRUSTWATCH_TF_PLUGIN_DIR", "/opt/tf-plugins"))


def _terraform() -> str:
    binary = shutil.which("terraform")
    if not binary:
        pytest.skip("no terraform binary on this machine")
    return binary


def test_terraform_fmt_is_clean() -> None:
    result = subprocess.run(
        [_terraform(), "fmt", "-check", "-recursive", "-list=true", str(DEPLOY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"not terraform-formatted: {result.stdout}"


def test_terraform_validates_the_aws_module(tmp_path: Path) -> None:
    binary = _terraform()
    if not (TF_PLUGINS / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
        pytest.skip(f"no local AWS provider mirror in {TF_PLUGINS}")
    work = tmp_path / "aws"
    shutil.copytree(DEPLOY / "aws", work)
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    for command in (["init", "-input=false", f"-plugin-dir={TF_PLUGINS}"], ["validate"]):
        result = subprocess.run(
            [binary, *command, "-no-color"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


# -- slow: apply the AWS module to moto and read back what it made ---------------------------

_ROOT_MODULE = """
provider "aws" {
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  endpoints {
    sts              = "%(endpoint)s"
    iam              = "%(endpoint)s"
    dynamodb         = "%(endpoint)s"
    sqs              = "%(endpoint)s"
    lambda           = "%(endpoint)s"
    cloudwatchevents = "%(endpoint)s"
    cloudwatchlogs   = "%(endpoint)s"
    scheduler        = "%(endpoint)s"
  }
}

module "trustwatch" {
  source            = "%(module)s"
  name              = "twdeploy"
  bundle_path       = "bundle.zip"
  baseline_url      = "s3://tw-config/trustwatch/baseline.yaml"
  min_severity      = "high"
  slack_webhook_url = "https://hooks.example.invalid/slack"
  secret_arns = {
    TRUSTWATCH_WEBHOOK_SECRET = "%(secret)s#key"
  }
  ssm_parameters = {
    TRUSTWATCH_SMTP_URL = "/trustwatch/smtp-url"
  }
  remediation_enabled           = var.remediation_enabled
  remediation_resource_arns     = var.remediation_resource_arns
  remediation_role_arn_template = var.remediation_role_arn_template
}

variable "remediation_role_arn_template" {
  type    = string
  default = null
}

variable "remediation_enabled" {
  type    = bool
  default = false
}

variable "remediation_resource_arns" {
  type    = list(string)
  default = null
}
"""
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:trustwatch/hook-AbCdEf"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_aws_module_applies_to_moto(tmp_path: Path) -> None:
    binary = _terraform()
    if not (TF_PLUGINS / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
        pytest.skip(f"no local AWS provider mirror in {TF_PLUGINS}")
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        work = tmp_path / "root"
        work.mkdir()
        shutil.copytree(DEPLOY / "aws", tmp_path / "module")
        values = {"endpoint": endpoint, "module": tmp_path / "module", "secret": SECRET_ARN}
        (work / "main.tf").write_text(_ROOT_MODULE % values)
        with zipfile.ZipFile(work / "bundle.zip", "w") as bundle:
            bundle.writestr("handler.py", "def lambda_handler(event, context):\n    return {}\n")
        env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}

        def terraform(*command: str) -> None:
            result = subprocess.run(
                [binary, *command, "-no-color"],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr

        terraform("init", "-input=false", f"-plugin-dir={TF_PLUGINS}")
        terraform("apply", "-input=false", "-auto-approve")

        def client(service: str):
            return boto3.client(
                service,
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )

        events = client("events")
        rule = events.describe_rule(Name="twdeploy-identity-changes")
        assert rule["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
        # moto's own EventBridge matcher (its TestEventPattern API is a stub).
        from moto.events.models import EventPattern

        pattern = EventPattern.load(rule["EventPattern"])
        drift = json.loads(
            (ROOT / "examples/events/aws-trust-backdoor.eventbridge.json").read_text()
        )
        assert pattern.matches_event(drift)
        assume = dict(drift, source="aws.sts")
        assume["detail"] = dict(
            drift["detail"], eventSource="sts.amazonaws.com", eventName="AssumeRole"
        )
        assert pattern.matches_event(assume)
        other = json.loads(
            (DATA / "aws/eventbridge-cloudtrail-s3-createbucket-c7n.json").read_text()
        )
        assert not pattern.matches_event(other)
        read_only = dict(drift)
        read_only["detail"] = dict(drift["detail"], eventName="GetRole")
        assert not pattern.matches_event(read_only)
        (target,) = events.list_targets_by_rule(Rule="twdeploy-identity-changes")["Targets"]
        assert target["Arn"].endswith(":function:twdeploy")

        config = client("lambda").get_function_configuration(FunctionName="twdeploy")
        assert (config["Runtime"], config["Handler"]) == ("python3.11", "handler.lambda_handler")
        environment = config["Environment"]["Variables"]
        assert environment["TRUSTWATCH_STATE_TABLE"] == "twdeploy-state"
        assert environment["TRUSTWATCH_BASELINE"] == "s3://tw-config/trustwatch/baseline.yaml"
        assert environment["TRUSTWATCH_MIN_SEVERITY"] == "high"
        assert environment["TRUSTWATCH_WEBHOOK_SECRET"] == f"aws-secret:{SECRET_ARN}#key"
        assert environment["TRUSTWATCH_SMTP_URL"] == "ssm:/trustwatch/smtp-url"
        assert environment["TRUSTWATCH_SLACK_WEBHOOK_URL"] == "https://hooks.example.invalid/slack"

        policy = client("iam").get_role_policy(
            RoleName="twdeploy-function", PolicyName="twdeploy-function"
        )["PolicyDocument"]
        policy = json.loads(policy) if isinstance(policy, str) else policy
        grants = {
            s["Sid"]: (_as_list(s["Action"]), _as_list(s["Resource"])) for s in policy["Statement"]
        }
        assert grants["Baseline"] == (
            ["s3:GetObject"],
            ["arn:aws:s3:::tw-config/trustwatch/baseline.yaml"],
        )
        assert grants["Secrets"] == (["secretsmanager:GetSecretValue"], [SECRET_ARN])
        assert grants["Parameters"] == (
            ["ssm:GetParameter"],
            ["arn:aws:ssm:us-east-1:123456789012:parameter/trustwatch/smtp-url"],
        )
        assert "AlertMail" not in grants and "DecryptSecrets" not in grants
        assert all("*" not in a for actions, _ in grants.values() for a in actions)
        # remediation disabled (the default): the reads a dry run plans from, no write
        from trustwatch.aws import state
        from trustwatch.aws.remediate import PASS_ROLE, READ_ACTIONS, WRITE_ACTIONS

        iam_actions = {a for actions, _ in grants.values() for a in actions if a.startswith("iam:")}
        # the remediation plan's reads and the scheduled sweep's, nothing else of IAM
        assert iam_actions == {
            a for a in (*READ_ACTIONS, *state.READ_ACTIONS) if a.startswith("iam:")
        }
        assert "RemediationReadBuckets" not in grants  # no bucket unless named
        assert "RemediationAssumeRole" not in grants  # no other account unless a role is named
        assert environment["TRUSTWATCH_REMEDIATION"] == "dry-run"
        account_iam = "arn:aws:iam::123456789012"
        assert grants["RemediationReadRoles"][1] == [f"{account_iam}:role/*"]

        # enabled, scoped to the baseline's ARNs: exactly the calls the code makes
        role = f"{account_iam}:role/databricks-cross-account"
        profile = f"{account_iam}:instance-profile/databricks-cluster-data"
        customer = f"{account_iam}:policy/databricks-cluster-data-read"
        bucket = "arn:aws:s3:::dbx-prod-root"
        terraform(
            "apply",
            "-input=false",
            "-auto-approve",
            "-var=remediation_enabled=true",
            f'-var=remediation_resource_arns=["{role}","{profile}","{customer}","{bucket}"]',
            "-var=remediation_role_arn_template=arn:aws:iam::{account}:role/tw-remediator",
        )
        config = client("lambda").get_function_configuration(FunctionName="twdeploy")
        enabled_env = config["Environment"]["Variables"]
        assert enabled_env["TRUSTWATCH_REMEDIATION"] == "apply"
        assert enabled_env["TRUSTWATCH_AWS_REMEDIATION_ROLE"] == (
            "arn:aws:iam::{account}:role/tw-remediator"
        )
        policy = client("iam").get_role_policy(
            RoleName="twdeploy-function", PolicyName="twdeploy-function"
        )["PolicyDocument"]
        policy = json.loads(policy) if isinstance(policy, str) else policy
        statements = {s["Sid"]: s for s in policy["Statement"]}
        iam_grants = {
            sid: (_as_list(s["Action"]), _as_list(s["Resource"]))
            for sid, s in statements.items()
            if sid.startswith("Remediat")
        }
        granted = {a for actions, _ in iam_grants.values() for a in actions}
        assert granted == {*READ_ACTIONS, *WRITE_ACTIONS, PASS_ROLE, "sts:AssumeRole"}
        assert iam_grants["RemediationAssumeRole"][1] == ["arn:aws:iam::*:role/tw-remediator"]
        assert iam_grants["RemediateRoles"][1] == [role]
        assert iam_grants["RemediateInstanceProfiles"][1] == [profile]
        assert iam_grants["RemediatePolicyVersions"][1] == [customer]
        assert iam_grants["RemediateBuckets"] == (["s3:PutBucketPublicAccessBlock"], [bucket])
        assert iam_grants["RemediatePassRoleToInstanceProfiles"][1] == [role]
        assert "iam:AssociatedResourceArn" in json.dumps(
            statements["RemediatePassRoleToInstanceProfiles"]["Condition"]
        )

        schedule = client("scheduler").get_schedule(Name="twdeploy-sweep")
        assert schedule["ScheduleExpression"] == "rate(1 hour)"
        assert schedule["Target"]["Arn"].endswith(":function:twdeploy")
        assert json.loads(schedule["Target"]["Input"]) == {"trustwatch": "sweep"}
        assert grants["SweepFanOut"] == (["lambda:InvokeFunction"], [config["FunctionArn"]])

        ttl = client("dynamodb").describe_time_to_live(TableName="twdeploy-state")
        assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires"
        invoke = client("lambda").get_function_event_invoke_config(FunctionName="twdeploy")
        assert invoke["DestinationConfig"]["OnFailure"]["Destination"].endswith(
            ":twdeploy-dead-letter"
        )
    finally:
        server.stop()


def _as_list(value: str | list[str]) -> list[str]:
    return sorted([value] if isinstance(value, str) else value)
