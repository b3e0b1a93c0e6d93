"""Contract 1: the baseline loads, and every invalid variant names file, line and field."""

from __future__ import annotations

import re

import pytest
from conftest import EXAMPLE_BASELINE, HANDBOOK_BASELINE
from trustwatch.aws.baseline import TemplateRef
from trustwatch.baseline import BaselineError, load_baseline, parse_baseline


def test_handbook_and_project_examples_load_unchanged():
    for path in (HANDBOOK_BASELINE, EXAMPLE_BASELINE):
        baseline = load_baseline(path)
        role = baseline.aws.accounts["111122223333"].roles["databricks-uc-metastore"]
        assert role.trust == TemplateRef(
            template="databricks-unity-catalog", external_id="9d2b6c1e-3f4a-4e8b-a7c5-1b2d3e4f5a6b"
        )
        assert baseline.defaults.mode == "alert"
        assert baseline.gcp.projects["dbx-prod-4821"].service_accounts


TEXT = EXAMPLE_BASELINE.read_text()


@pytest.mark.parametrize(
    ("old", "new", "line", "path", "message"),
    [
        (
            "template: ec2",
            "template: ec3",
            44,
            "aws.accounts.111122223333.roles.databricks-cluster-data.trust",
            "unknown template 'ec3'",
        ),
        (
            "untracked_roles: alert",
            "untracked_roles: maybe",
            51,
            "aws.accounts.111122223333.untracked_roles",
            "expected 'alert' or 'ignore'",
        ),
        ("  mode: alert ", "  mode: fix ", 10, "defaults.mode", "expected 'alert' or 'remediate'"),
        (
            "external_id: 9d2b",
            "externalid: 9d2b",
            38,
            "aws.accounts.111122223333.roles.databricks-uc-metastore.trust",
            "externalid: unknown field",
        ),
        (
            "            external_id: 9d2b6c1e-3f4a-4e8b-a7c5-1b2d3e4f5a6b\n",
            "",
            38,
            "aws.accounts.111122223333.roles.databricks-uc-metastore.trust",
            "needs 'external_id'",
        ),
        ('"111122223333":', "111122223:", 25, "aws.accounts", "must be 12 digits"),
        (
            "principal_id: 3f2a",
            "principal: 3f2a",
            58,
            "azure.subscriptions.9b1c4f2e-3d5a-4b6c-8d7e-0f1a2b3c4d5e.identities.uc-access-connector",
            "required field is missing",
        ),
        (
            "user_managed_keys: false\n          mode",
            "user_managed_keys: nope\n          mode",
            88,
            "gcp.projects.dbx-prod-4821.service_accounts."
            "databricks-compute@dbx-prod-4821.iam.gserviceaccount.com.user_managed_keys",
            "valid boolean",
        ),
        (
            "- arn:aws:iam::111122223333:policy/databricks-uc",
            "- not-an-arn/databricks-uc",
            41,
            "aws.accounts.111122223333.roles.databricks-uc-metastore.managed_policies",
            "not a managed policy ARN",
        ),
        (
            "role: databricks-cluster-data",
            "role: nosuchrole",
            None,
            "instance_profiles",
            "'nosuchrole' is not a role",
        ),
    ],
)
def test_invalid_variants_name_line_and_field(old, new, line, path, message):
    assert old in TEXT
    with pytest.raises(BaselineError) as err:
        parse_baseline(TEXT.replace(old, new, 1), "examples/baseline.yaml")
    text = str(err.value)
    assert text.startswith("examples/baseline.yaml: invalid baseline")
    assert path in text
    assert message in text
    if line is not None:
        assert f"line {line}: {path}" in text


def test_unknown_field_is_reported():
    with pytest.raises(BaselineError, match=r"line 3: aws.acounts: unknown field"):
        parse_baseline("version: 1\naws:\n  acounts: {}\n", "b.yaml")


def test_a_section_that_is_not_a_mapping_reads_as_it_always_did():
    # the sections are dataclasses now; pydantic words that error otherwise for them
    with pytest.raises(BaselineError) as caught:
        parse_baseline("version: 1\naws:\n  accounts:\n    '111122223333': 5\n", "b.yaml")
    assert str(caught.value) == (
        "b.yaml: invalid baseline: line 4: aws.accounts.111122223333: "
        "Input should be a valid dictionary or instance of AwsAccount"
    )


def test_yaml_syntax_error_names_the_line():
    with pytest.raises(BaselineError, match=r"b.yaml: invalid baseline: line 4: not valid YAML"):
        parse_baseline("version: 1\naws:\n  accounts: [\n", "b.yaml")


def test_not_a_mapping_and_missing_file(tmp_path):
    with pytest.raises(BaselineError, match="expected a mapping"):
        parse_baseline("- a\n- b\n", "b.yaml")
    with pytest.raises(
        BaselineError, match=re.escape(f"{tmp_path / 'nope.yaml'}: invalid baseline: cannot read")
    ):
        load_baseline(tmp_path / "nope.yaml")


def test_literal_trust_document_and_json_text():
    baseline = parse_baseline(
        "aws:\n  accounts:\n    '123456789012':\n      roles:\n        r:\n"
        "          trust: '{\"Statement\": []}'\n"
    )
    assert baseline.aws.accounts["123456789012"].roles["r"].trust == {"Statement": []}
    with pytest.raises(BaselineError, match="needs a 'Statement'"):
        parse_baseline(
            "aws:\n  accounts:\n    '123456789012':\n      roles:\n        r:\n          trust: {a: 1}\n"
        )


def test_cross_account_template_needs_databricks_account_id():
    with pytest.raises(BaselineError, match=r"needs databricks\.account_id"):
        parse_baseline(
            "aws:\n  accounts:\n    '123456789012':\n      roles:\n        r:\n"
            "          trust: {template: databricks-cross-account}\n"
        )


def test_unknown_azure_role_name_is_rejected_at_load():
    text = TEXT.replace(
        "- role: Storage Queue Data Contributor", "- role: Storage Queue Data Contributer"
    )
    with pytest.raises(BaselineError) as err:
        parse_baseline(text, "b.yaml")
    assert "role_assignments.1.role" in str(err.value)
    assert "unknown Azure role 'Storage Queue Data Contributer'" in str(err.value)
