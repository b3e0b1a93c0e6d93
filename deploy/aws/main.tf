# trustwatch on AWS: CloudTrail IAM/STS calls and watched-bucket S3 calls -> EventBridge
# -> Lambda -> alerts.
#
# IAM is a global service: its CloudTrail events reach EventBridge in us-east-1 only, so
# deploy this module there (the check below warns otherwise). AssumeRole events arrive in
# the region whose STS endpoint was called; see README.md for other regions.

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  bundle_path = coalesce(var.bundle_path, "${path.module}/../../dist/trustwatch-aws.zip")

  # eventSource -> the eventNames trustwatch.aws.events turns into changes; written from
  # the code by `trustwatch package aws` (tests/test_deploy.py checks it is current).
  watched = jsondecode(file("${path.module}/watched_operations.json"))

  baseline_bucket = var.baseline_url == null ? null : split("/", trimprefix(var.baseline_url, "s3://"))[0]
  baseline_key    = var.baseline_url == null ? null : join("/", slice(split("/", trimprefix(var.baseline_url, "s3://")), 1, length(split("/", trimprefix(var.baseline_url, "s3://")))))

  literal_secrets = {
    TRUSTWATCH_SLACK_WEBHOOK_URL = var.slack_webhook_url
    TRUSTWATCH_TEAMS_WEBHOOK_URL = var.teams_webhook_url
    TRUSTWATCH_WEBHOOK_URL       = var.webhook_url
    TRUSTWATCH_WEBHOOK_SECRET    = var.webhook_secret
    TRUSTWATCH_SMTP_URL          = var.smtp_url
  }
  # A secret-store value reaches the function as a reference it resolves at run time
  # (trustwatch.alerts.secrets): `aws-secret:ARN[#field]`, `ssm:/name[#field]`.
  secret_references = merge(
    { for k, v in var.secret_arns : k => "aws-secret:${v}" },
    { for k, v in var.ssm_parameters : k => "ssm:${v}" },
  )
  secret_arns  = distinct([for v in values(var.secret_arns) : split("#", v)[0]])
  ssm_names    = distinct([for v in values(var.ssm_parameters) : split("#", v)[0]])
  ssm_arn_base = "arn:${data.aws_partition.current.partition}:ssm:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:parameter"
  ssm_arns     = [for n in local.ssm_names : "${local.ssm_arn_base}${n}"]
  uses_ses     = var.ses_region != null
  # built, not read from the function: the function's policy must exist before it does
  function_arn = "arn:${data.aws_partition.current.partition}:lambda:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:function:${var.name}"
  sweeps       = var.sweep_schedule != null
  plain_setting = { for k, v in {
    TRUSTWATCH_BASELINE             = var.baseline_url
    TRUSTWATCH_MIN_SEVERITY         = var.min_severity
    TRUSTWATCH_STATE_TABLE          = aws_dynamodb_table.state.name
    TRUSTWATCH_EMAIL_FROM           = var.email_from
    TRUSTWATCH_EMAIL_TO             = var.email_to
    TRUSTWATCH_SES_REGION           = var.ses_region
    TRUSTWATCH_REMEDIATION          = var.remediation_enabled ? "apply" : (var.remediation_plan ? "dry-run" : "off")
    TRUSTWATCH_REMEDIATION_MAX_AGE  = var.remediation_max_age_s
    TRUSTWATCH_AWS_REMEDIATION_ROLE = var.remediation_role_arn_template
    # the scheduled sweep (trustwatch.aws.state, trustwatch.aws.catchup)
    TRUSTWATCH_AWS_SWEEP_ROLE        = var.sweep_role_arn_template
    TRUSTWATCH_AWS_SWEEP_EXTERNAL_ID = var.sweep_external_id
    TRUSTWATCH_AWS_CATCH_UP_REGIONS  = length(var.catch_up_regions) > 0 ? join(",", var.catch_up_regions) : null
    POWERTOOLS_SERVICE_NAME          = "trustwatch"
    POWERTOOLS_METRICS_NAMESPACE     = "trustwatch"
  } : k => v if v != null }

  # What trustwatch.aws.remediate reads (always: a dry run plans from it) and writes (only
  # with remediation_enabled), on the baseline's IAM resources or, unnamed, the account's.
  iam_arn_base = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}"
  remediation_arns = var.remediation_resource_arns != null ? var.remediation_resource_arns : [
    "${local.iam_arn_base}:role/*",
    "${local.iam_arn_base}:instance-profile/*",
    "${local.iam_arn_base}:policy/*",
  ]
  remediation_roles    = [for arn in local.remediation_arns : arn if length(regexall(":role/", arn)) > 0]
  remediation_profiles = [for arn in local.remediation_arns : arn if length(regexall(":instance-profile/", arn)) > 0]
  remediation_policies = [for arn in local.remediation_arns : arn if length(regexall(":policy/", arn)) > 0]
  remediation_buckets  = [for arn in local.remediation_arns : arn if length(regexall(":s3:::", arn)) > 0]
  # the statements below for each kind of resource, read and write; a kind without ARNs has none
  remediation_statements = {
    RemediationReadRoles      = { write = false, resources = local.remediation_roles, actions = ["iam:GetRole", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies"] }
    RemediationReadProfiles   = { write = false, resources = local.remediation_profiles, actions = ["iam:GetInstanceProfile"] }
    RemediationReadPolicies   = { write = false, resources = local.remediation_policies, actions = ["iam:ListPolicyVersions", "iam:GetPolicyVersion"] }
    RemediationReadBuckets    = { write = false, resources = local.remediation_buckets, actions = ["s3:GetBucketPublicAccessBlock"] }
    RemediateRoles            = { write = true, resources = local.remediation_roles, actions = ["iam:UpdateAssumeRolePolicy", "iam:DetachRolePolicy", "iam:DeleteRolePolicy", "iam:PutRolePolicy", "iam:PutRolePermissionsBoundary"] }
    RemediateInstanceProfiles = { write = true, resources = local.remediation_profiles, actions = ["iam:RemoveRoleFromInstanceProfile", "iam:AddRoleToInstanceProfile"] }
    RemediatePolicyVersions   = { write = true, resources = local.remediation_policies, actions = ["iam:SetDefaultPolicyVersion"] }
    RemediateBuckets          = { write = true, resources = local.remediation_buckets, actions = ["s3:PutBucketPublicAccessBlock"] }
  }
  remediation_granted = {
    for sid, s in local.remediation_statements : sid => s
    if length(s.resources) > 0 && (var.remediation_enabled || !s.write)
  }

  environment = merge(
    local.plain_setting,
    { for k, v in local.literal_secrets : k => v if v != null },
    local.secret_references,
    var.extra_environment,
  )
}

check "iam_events_region" {
  assert {
    condition     = data.aws_region.current.name == "us-east-1"
    error_message = "IAM's CloudTrail events are delivered to EventBridge in us-east-1 only; in ${data.aws_region.current.name} this rule sees AssumeRole calls made to that region's STS endpoint and no IAM changes."
  }
}

# -- state: powertools idempotency records and alert dedup claims share one table ---------

resource "aws_dynamodb_table" "state" {
  name         = "${var.name}-state"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "id"

  attribute {
    name = "id"
    type = "S"
  }

  ttl {
    attribute_name = "expires"
    enabled        = true
  }

  server_side_encryption {
    enabled = true
  }

  tags = var.tags
}

# -- failures: events EventBridge could not deliver, and invocations that failed every retry

resource "aws_sqs_queue" "dead_letter" {
  name                      = "${var.name}-dead-letter"
  message_retention_seconds = 1209600 # 14 days, the most SQS keeps
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

data "aws_iam_policy_document" "dead_letter" {
  statement {
    sid       = "EventBridgeDeliveryFailures"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dead_letter.arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.identity_changes.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "dead_letter" {
  queue_url = aws_sqs_queue.dead_letter.id
  policy    = data.aws_iam_policy_document.dead_letter.json
}

# -- the function's identity: only what the code calls ------------------------------------

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "function" {
  name               = "${var.name}-function"
  description        = "trustwatch responder: logs, its state table, its dead-letter queue, its secrets."
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "function" {
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function.arn}:*"]
  }

  statement {
    sid       = "StateTable"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    resources = [aws_dynamodb_table.state.arn]
  }

  statement {
    sid       = "OnFailureDestination"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dead_letter.arn]
  }

  # The scheduled sweep: the account's roles and policies in one paged read, the CloudTrail
  # catch-up, one asynchronous invocation of itself per account. Neither
  # GetAccountAuthorizationDetails nor LookupEvents has resource-level permissions
  # (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html,
  # https://docs.aws.amazon.com/service-authorization/latest/reference/list_awscloudtrail.html).
  dynamic "statement" {
    for_each = local.sweeps ? [1] : []
    content {
      sid       = "SweepRead"
      actions   = ["iam:GetAccountAuthorizationDetails", "cloudtrail:LookupEvents"]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = local.sweeps ? [1] : []
    content {
      sid       = "SweepInstanceProfiles"
      actions   = ["iam:GetInstanceProfile"]
      resources = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:instance-profile/*"]
    }
  }

  # the baseline's watched buckets (named in the baseline, not here) and the account's
  # Block Public Access, which has no resource-level permission
  dynamic "statement" {
    for_each = local.sweeps ? [1] : []
    content {
      sid       = "SweepBuckets"
      actions   = ["s3:GetBucketPolicy", "s3:GetBucketPublicAccessBlock", "s3:GetBucketOwnershipControls", "s3:GetBucketAcl"]
      resources = ["arn:${data.aws_partition.current.partition}:s3:::*"]
    }
  }

  dynamic "statement" {
    for_each = local.sweeps ? [1] : []
    content {
      sid       = "SweepAccountPublicAccessBlock"
      actions   = ["s3:GetAccountPublicAccessBlock"]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = local.sweeps ? [1] : []
    content {
      sid       = "SweepFanOut"
      actions   = ["lambda:InvokeFunction"]
      resources = [local.function_arn]
    }
  }

  dynamic "statement" {
    for_each = local.sweeps && var.sweep_role_arn_template != null ? [1] : []
    content {
      sid       = "SweepOtherAccounts"
      actions   = ["sts:AssumeRole"]
      resources = [replace(var.sweep_role_arn_template, "{account}", "*")]
    }
  }

  dynamic "statement" {
    for_each = var.baseline_url == null ? [] : [1]
    content {
      sid       = "Baseline"
      actions   = ["s3:GetObject"]
      resources = ["arn:${data.aws_partition.current.partition}:s3:::${local.baseline_bucket}/${local.baseline_key}"]
    }
  }

  dynamic "statement" {
    for_each = length(local.secret_arns) > 0 ? [1] : []
    content {
      sid       = "Secrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = local.secret_arns
    }
  }

  dynamic "statement" {
    for_each = length(local.ssm_arns) > 0 ? [1] : []
    content {
      sid       = "Parameters"
      actions   = ["ssm:GetParameter"]
      resources = local.ssm_arns
    }
  }

  dynamic "statement" {
    for_each = length(var.kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "DecryptSecrets"
      actions   = ["kms:Decrypt"]
      resources = var.kms_key_arns
    }
  }

  dynamic "statement" {
    for_each = local.uses_ses && length(var.ses_identity_arns) > 0 ? [1] : []
    content {
      sid       = "AlertMail"
      actions   = ["ses:SendEmail", "ses:SendRawEmail"]
      resources = var.ses_identity_arns
    }
  }

  # Remediation (trustwatch.aws.remediate): READ_ACTIONS always, WRITE_ACTIONS when enabled.
  dynamic "statement" {
    for_each = local.remediation_granted
    content {
      sid       = statement.key
      actions   = statement.value.actions
      resources = statement.value.resources
    }
  }

  # findings of other accounts: their remediation role (reads in a dry run too)
  dynamic "statement" {
    for_each = var.remediation_role_arn_template == null ? [] : [1]
    content {
      sid       = "RemediationAssumeRole"
      actions   = ["sts:AssumeRole"]
      resources = [replace(var.remediation_role_arn_template, "{account}", "*")]
    }
  }

  # AddRoleToInstanceProfile needs iam:PassRole on the role it adds
  # (https://docs.aws.amazon.com/IAM/latest/APIReference/API_AddRoleToInstanceProfile.html),
  # with iam:AssociatedResourceArn as that page says it must be written.
  dynamic "statement" {
    for_each = var.remediation_enabled && length(local.remediation_profiles) > 0 && length(local.remediation_roles) > 0 ? [1] : []
    content {
      sid       = "RemediatePassRoleToInstanceProfiles"
      actions   = ["iam:PassRole"]
      resources = local.remediation_roles

      condition {
        test     = "ArnLike"
        variable = "iam:AssociatedResourceArn"
        values   = ["arn:${data.aws_partition.current.partition}:ec2:*:${data.aws_caller_identity.current.account_id}:instance/*"]
      }
    }
  }
}

resource "aws_iam_role_policy" "function" {
  name   = "${var.name}-function"
  role   = aws_iam_role.function.id
  policy = data.aws_iam_policy_document.function.json
}

# -- the function --------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "function" {
  name              = "/aws/lambda/${var.name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_lambda_function" "responder" {
  function_name    = var.name
  description      = "trustwatch: drift responder for the identities Databricks uses"
  role             = aws_iam_role.function.arn
  filename         = local.bundle_path
  source_code_hash = filebase64sha256(local.bundle_path)
  handler          = "handler.lambda_handler"
  # The bundle vendors CPython 3.11 manylinux2014 x86_64 wheels (trustwatch.package).
  runtime       = "python3.11"
  architectures = ["x86_64"]
  memory_size   = var.memory_mb
  timeout       = var.timeout_s
  # -1: no reservation, the account's unreserved pool (README, "Concurrency")
  reserved_concurrent_executions = var.reserved_concurrency

  environment {
    variables = local.environment
  }

  depends_on = [aws_cloudwatch_log_group.function, aws_iam_role_policy.function]
  tags       = var.tags
}

resource "aws_lambda_function_event_invoke_config" "responder" {
  function_name                = aws_lambda_function.responder.function_name
  maximum_retry_attempts       = var.async_retry_attempts
  maximum_event_age_in_seconds = var.max_event_age_s

  destination_config {
    on_failure {
      destination = aws_sqs_queue.dead_letter.arn
    }
  }
}

# -- the events ------------------------------------------------------------------------------

resource "aws_cloudwatch_event_rule" "identity_changes" {
  name        = "${var.name}-identity-changes"
  description = "IAM role/policy changes, AssumeRole calls, Lambda execution-role changes and S3 bucket policy/public access changes, for trustwatch"
  # AssumeRole is a read-only CloudTrail event: EventBridge delivers those only in this state.
  state = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"

  event_pattern = jsonencode({
    # iam.amazonaws.com -> aws.iam, lambda.amazonaws.com -> aws.lambda, s3.amazonaws.com -> aws.s3 (bucket-level management
    # events: the watched S3 calls need no data-event logging)
    source      = [for s in keys(local.watched) : "aws.${split(".", s)[0]}"]
    detail-type = ["AWS API Call via CloudTrail"]
    detail = {
      eventSource = keys(local.watched)
      # The calls trustwatch.aws.events understands. AssumeRole is how a confused-deputy
      # attempt shows (a wrong or missing ExternalId).
      eventName = flatten(values(local.watched))
    }
  })

  tags = var.tags
}

resource "aws_cloudwatch_event_target" "responder" {
  rule      = aws_cloudwatch_event_rule.identity_changes.name
  target_id = "trustwatch"
  arn       = aws_lambda_function.responder.arn

  retry_policy {
    maximum_event_age_in_seconds = var.max_event_age_s
    maximum_retry_attempts       = 24
  }

  dead_letter_config {
    arn = aws_sqs_queue.dead_letter.arn
  }
}

resource "aws_lambda_permission" "events" {
  statement_id  = "AllowEventBridge"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.responder.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.identity_changes.arn
}

# -- the scheduled sweep: EventBridge Scheduler -> the same function ------------------------

data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  count              = local.sweeps ? 1 : 0
  name               = "${var.name}-scheduler"
  description        = "trustwatch sweep schedule: invokes the function, dead-letters what it cannot."
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "InvokeFunction"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.responder.arn]
  }

  statement {
    sid       = "DeadLetter"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dead_letter.arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  count  = local.sweeps ? 1 : 0
  name   = "${var.name}-scheduler"
  role   = aws_iam_role.scheduler[0].id
  policy = data.aws_iam_policy_document.scheduler.json
}

resource "aws_scheduler_schedule" "sweep" {
  count       = local.sweeps ? 1 : 0
  name        = "${var.name}-sweep"
  description = "trustwatch compliance sweep: the function fans out one invocation per account"
  # e.g. rate(1 hour), cron(0 * * * ? *)
  schedule_expression = var.sweep_schedule

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.responder.arn
    role_arn = aws_iam_role.scheduler[0].arn
    # trustwatch.sweep's scheduled message: list the accounts and fan out
    input = jsonencode({ trustwatch = "sweep" })

    retry_policy {
      maximum_event_age_in_seconds = var.max_event_age_s
      maximum_retry_attempts       = 2
    }

    dead_letter_config {
      arn = aws_sqs_queue.dead_letter.arn
    }
  }
}
