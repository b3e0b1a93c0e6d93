variable "name" {
  description = "Name (and prefix) of every resource: the function, its role, rule, table and queue."
  type        = string
  default     = "trustwatch"

  validation {
    condition     = can(regex("^[A-Za-z0-9-_]{1,40}$", var.name))
    error_message = "name: 1-40 letters, digits, '-' or '_'."
  }
}

variable "bundle_path" {
  description = "The zip from `trustwatch package aws` (default: dist/trustwatch-aws.zip in the checkout)."
  type        = string
  default     = null
}

variable "baseline_url" {
  description = "TRUSTWATCH_BASELINE: null = the baseline.yaml bundled in the zip (`trustwatch package aws --baseline FILE`); or s3://BUCKET/KEY (the function gets s3:GetObject on that object only)."
  type        = string
  default     = null

  validation {
    condition     = var.baseline_url == null || can(regex("^s3://[^/]+/.+", var.baseline_url))
    error_message = "baseline_url: null (the bundled baseline.yaml) or s3://BUCKET/KEY."
  }
}

variable "min_severity" {
  description = "TRUSTWATCH_MIN_SEVERITY: the lowest finding severity that alerts."
  type        = string
  default     = "medium"

  validation {
    condition     = contains(["critical", "high", "medium", "low", "info"], var.min_severity)
    error_message = "min_severity: one of critical, high, medium, low, info."
  }
}

# Secrets as literal values. Prefer secret_arns / ssm_parameters below: a literal ends up
# in the Terraform state and the Lambda configuration.
variable "slack_webhook_url" {
  description = "TRUSTWATCH_SLACK_WEBHOOK_URL (literal; or use secret_arns / ssm_parameters)."
  type        = string
  default     = null
  sensitive   = true
}

variable "teams_webhook_url" {
  description = "TRUSTWATCH_TEAMS_WEBHOOK_URL (literal; or use secret_arns / ssm_parameters)."
  type        = string
  default     = null
  sensitive   = true
}

variable "webhook_url" {
  description = "TRUSTWATCH_WEBHOOK_URL: a generic JSON webhook (literal; or use secret_arns / ssm_parameters)."
  type        = string
  default     = null
  sensitive   = true
}

variable "webhook_secret" {
  description = "TRUSTWATCH_WEBHOOK_SECRET: the webhook's HMAC signing key (literal; or use secret_arns / ssm_parameters)."
  type        = string
  default     = null
  sensitive   = true
}

variable "smtp_url" {
  description = "TRUSTWATCH_SMTP_URL: smtp://user:pass@host:port or smtps://... (literal; or use secret_arns / ssm_parameters)."
  type        = string
  default     = null
  sensitive   = true
}

variable "email_from" {
  description = "TRUSTWATCH_EMAIL_FROM: sender address of alert mail (SMTP or SES)."
  type        = string
  default     = null
}

variable "email_to" {
  description = "TRUSTWATCH_EMAIL_TO: comma-separated recipients of alert mail."
  type        = string
  default     = null
}

variable "ses_region" {
  description = "TRUSTWATCH_SES_REGION: send alert mail with Amazon SES in this region (instead of SMTP)."
  type        = string
  default     = null
}

variable "ses_identity_arns" {
  description = "SES identities (arn:aws:ses:REGION:ACCOUNT:identity/DOMAIN-OR-ADDRESS) the function may send from, when ses_region is set."
  type        = list(string)
  default     = []
}

variable "secret_arns" {
  description = "Secrets Manager secrets, by the variable they fill: { TRUSTWATCH_SLACK_WEBHOOK_URL = \"arn:aws:secretsmanager:us-east-1:111122223333:secret:trustwatch/slack-AbCdEf\" }. Full ARN (with the 6-character suffix); append #FIELD to read one field of a JSON secret. The function reads them at run time (env value `aws-secret:ARN`) and gets secretsmanager:GetSecretValue on these ARNs only."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for k, v in var.secret_arns :
      contains(["TRUSTWATCH_SLACK_WEBHOOK_URL", "TRUSTWATCH_TEAMS_WEBHOOK_URL", "TRUSTWATCH_WEBHOOK_URL", "TRUSTWATCH_WEBHOOK_SECRET", "TRUSTWATCH_SMTP_URL"], k) && can(regex("^arn:aws[a-z-]*:secretsmanager:[^:]+:[0-9]{12}:secret:[^#]+(#.+)?$", v))
    ])
    error_message = "secret_arns: keys are TRUSTWATCH_SLACK_WEBHOOK_URL, TRUSTWATCH_TEAMS_WEBHOOK_URL, TRUSTWATCH_WEBHOOK_URL, TRUSTWATCH_WEBHOOK_SECRET or TRUSTWATCH_SMTP_URL; values are Secrets Manager secret ARNs (optionally #FIELD)."
  }
}

variable "ssm_parameters" {
  description = "SSM Parameter Store parameters (SecureString), by the variable they fill: { TRUSTWATCH_SMTP_URL = \"/trustwatch/smtp-url\" }. The function gets ssm:GetParameter on these only."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for k, v in var.ssm_parameters :
      contains(["TRUSTWATCH_SLACK_WEBHOOK_URL", "TRUSTWATCH_TEAMS_WEBHOOK_URL", "TRUSTWATCH_WEBHOOK_URL", "TRUSTWATCH_WEBHOOK_SECRET", "TRUSTWATCH_SMTP_URL"], k) && can(regex("^/[^#]+(#.+)?$", v))
    ])
    error_message = "ssm_parameters: keys are one of the TRUSTWATCH_* secret variables; values are parameter names starting with '/' (optionally #FIELD)."
  }
}

variable "kms_key_arns" {
  description = "Customer-managed KMS keys that encrypt the secrets, parameters or the baseline object (kms:Decrypt on these only). Not needed for AWS-managed keys."
  type        = list(string)
  default     = []
}

variable "remediation_enabled" {
  description = "Let the function put drift back (TRUSTWATCH_REMEDIATION=apply): grants the IAM write actions trustwatch.aws.remediate calls. Only baseline identities whose mode is remediate are changed. false (default): a dry run, each finding shows the plan and the function only reads IAM."
  type        = bool
  default     = false
}

variable "remediation_plan" {
  description = "With remediation_enabled = false: true (default) is a dry run, each finding shows the plan, read from the cloud once per finding; false sets TRUSTWATCH_REMEDIATION=off: detection and alerts only, no plan and no read for it (the shortest cold start: no cloud SDK on the event path). Ignored when remediation_enabled is true."
  type        = bool
  default     = true
}

variable "remediation_resource_arns" {
  description = "The ARNs remediation reads and, when enabled, writes: the baseline's roles (arn:aws:iam::ACCOUNT:role/PATH/NAME), watched instance profiles, the customer policies whose versions it may restore or that are (or replace) their boundaries, and watched buckets (arn:aws:s3:::NAME, for their Block Public Access). null (default): every role, instance profile and customer policy of this account, and no bucket (the module does not read the baseline)."
  type        = list(string)
  default     = null

  validation {
    condition = var.remediation_resource_arns == null ? true : alltrue([
      for arn in var.remediation_resource_arns :
      can(regex("^arn:aws[a-z-]*:(iam::[0-9]{12}:(role|instance-profile|policy)/.+|s3:::[^/*]+)$", arn))
    ])
    error_message = "remediation_resource_arns: IAM role, instance-profile or policy ARNs of the account, or S3 bucket ARNs."
  }
}

variable "remediation_role_arn_template" {
  description = "TRUSTWATCH_AWS_REMEDIATION_ROLE: the role the function assumes to re-read and put back findings of another account, {account} standing for its id (arn:aws:iam::{account}:role/trustwatch-remediator). Grants sts:AssumeRole on it in any account. null (default): findings of other accounts fail, saying so. Each such role needs the reads and writes of the Remediation table in README.md, must trust this function's role, and must be in the baseline's actors.responder."
  type        = string
  default     = null

  validation {
    condition     = var.remediation_role_arn_template == null || can(regex("^arn:aws[a-z-]*:iam::[{]account[}]:role/.+", var.remediation_role_arn_template))
    error_message = "remediation_role_arn_template: a role ARN with {account} as its account id."
  }
}

variable "memory_mb" {
  description = "Lambda memory (MB); CPU scales with it, and cold start with CPU."
  type        = number
  default     = 512
}

variable "timeout_s" {
  description = "Lambda timeout (s): one event, its enrichment and its alerts with retries, or one account's sweep (its paged IAM read, and some 30 CloudTrail LookupEvents calls per region at 2 a second)."
  type        = number
  default     = 300
}

variable "reserved_concurrency" {
  description = "Lambda reserved concurrency: at most this many instances at once, and that many kept for this function (-1: none reserved, the account's unreserved pool; 0 stops it)."
  type        = number
  default     = -1
}

variable "log_retention_days" {
  description = "Retention of the function's CloudWatch log group."
  type        = number
  default     = 90
}

variable "max_event_age_s" {
  description = "How long EventBridge and Lambda keep retrying one event before it goes to the dead-letter queue."
  type        = number
  default     = 3600
}

variable "async_retry_attempts" {
  description = "Lambda async retries after a failed invocation (0-2) before the on-failure destination."
  type        = number
  default     = 2
}

variable "extra_environment" {
  description = "More environment variables for the function (e.g. TRUSTWATCH_DEDUP_WINDOW, TRUSTWATCH_ALERT_ROUTING)."
  type        = map(string)
  default     = {}
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}

variable "sweep_schedule" {
  description = "EventBridge Scheduler expression of the compliance sweep (rate(1 hour), cron(...)); null: no scheduled sweep (and none of its permissions). Keep TRUSTWATCH_DEDUP_WINDOW (extra_environment) at least this period plus the catch-up overlap (15 minutes)."
  type        = string
  default     = "rate(1 hour)"

  validation {
    condition     = var.sweep_schedule == null || can(regex("^(rate|cron|at)\\(.+\\)$", var.sweep_schedule))
    error_message = "sweep_schedule: null or a Scheduler expression: rate(...), cron(...) or at(...)."
  }
}

variable "sweep_role_arn_template" {
  description = "TRUSTWATCH_AWS_SWEEP_ROLE: the read role the sweep assumes in each other account of the baseline, its account as {account} (arn:aws:iam::{account}:role/trustwatch-read); null: only this account is read. Each read role needs iam:GetAccountAuthorizationDetails, iam:GetInstanceProfile and cloudtrail:LookupEvents, and must trust this module's role_arn."
  type        = string
  default     = null

  validation {
    condition     = var.sweep_role_arn_template == null || can(regex("^arn:aws[a-z-]*:iam::\\{account\\}:role/.+", var.sweep_role_arn_template))
    error_message = "sweep_role_arn_template: arn:PARTITION:iam::{account}:role/NAME."
  }
}

variable "sweep_external_id" {
  description = "TRUSTWATCH_AWS_SWEEP_EXTERNAL_ID: the sts:ExternalId the read roles require, if any."
  type        = string
  default     = null
  sensitive   = true
}

variable "catch_up_regions" {
  description = "TRUSTWATCH_AWS_CATCH_UP_REGIONS: regions whose CloudTrail the sweep's catch-up reads for STS, S3 and Lambda calls (IAM's are read in us-east-1); empty: the function's region."
  type        = list(string)
  default     = []
}

variable "remediation_max_age_s" {
  description = "TRUSTWATCH_REMEDIATION_MAX_AGE: an event older than this many seconds (a late delivery, a retry) is only planned, not applied: the state may have been changed since by automation the baseline approves. 0: no limit."
  type        = number
  default     = 3600
}
