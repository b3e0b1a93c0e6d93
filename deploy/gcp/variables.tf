variable "project_id" {
  description = "The project that hosts the function, its topics and its bucket (and whose audit logs are watched unless organization_id is set)."
  type        = string
}

variable "region" {
  description = "Region of the function, its bucket and its trigger."
  type        = string
  default     = "us-central1"
}

variable "name" {
  description = "Name (and prefix) of every resource."
  type        = string
  default     = "trustwatch"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.name))
    error_message = "name: 3-21 lower-case letters, digits or '-', starting with a letter (service account ids derive from it)."
  }
}

variable "organization_id" {
  description = "Watch the whole organization with an aggregated sink (include_children) instead of one project. Needs roles/logging.configWriter on the organization to apply."
  type        = string
  default     = null
}

variable "bundle_path" {
  description = "The zip from `trustwatch package gcp` (default: dist/trustwatch-gcp.zip in the checkout)."
  type        = string
  default     = null
}

variable "bucket_name" {
  description = "The bucket for the function source (source/) and the dedup state (state/). Default: PROJECT-NAME."
  type        = string
  default     = null
}

variable "baseline_url" {
  description = "TRUSTWATCH_BASELINE: null = the baseline.yaml bundled in the zip; or gs://BUCKET/OBJECT (the function may read that object only; the bucket needs uniform bucket-level access for the conditional grant)."
  type        = string
  default     = null

  validation {
    condition     = var.baseline_url == null || can(regex("^gs://[^/]+/.+", var.baseline_url))
    error_message = "baseline_url: null (the bundled baseline.yaml) or gs://BUCKET/OBJECT."
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

variable "secret_ids" {
  description = "Secret Manager secrets, by the variable they fill: { TRUSTWATCH_SLACK_WEBHOOK_URL = \"trustwatch-slack\" } (a secret id in project_id, or projects/P/secrets/S). The platform mounts the latest version as the environment variable; the function's service account may access these secrets only."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for k, v in var.secret_ids :
      contains(["TRUSTWATCH_SLACK_WEBHOOK_URL", "TRUSTWATCH_TEAMS_WEBHOOK_URL", "TRUSTWATCH_WEBHOOK_URL", "TRUSTWATCH_WEBHOOK_SECRET", "TRUSTWATCH_SMTP_URL"], k)
      && can(regex("^(projects/[^/]+/secrets/)?[A-Za-z0-9_-]+$", v))
    ])
    error_message = "secret_ids: keys are TRUSTWATCH_SLACK_WEBHOOK_URL, TRUSTWATCH_TEAMS_WEBHOOK_URL, TRUSTWATCH_WEBHOOK_URL, TRUSTWATCH_WEBHOOK_SECRET or TRUSTWATCH_SMTP_URL; values are secret ids or projects/P/secrets/S."
  }
}

variable "slack_webhook_url" {
  description = "TRUSTWATCH_SLACK_WEBHOOK_URL as a literal (prefer secret_ids: a literal lands in the state and the function's configuration)."
  type        = string
  default     = null
  sensitive   = true
}

variable "teams_webhook_url" {
  description = "TRUSTWATCH_TEAMS_WEBHOOK_URL as a literal (prefer secret_ids)."
  type        = string
  default     = null
  sensitive   = true
}

variable "webhook_url" {
  description = "TRUSTWATCH_WEBHOOK_URL as a literal (prefer secret_ids)."
  type        = string
  default     = null
  sensitive   = true
}

variable "webhook_secret" {
  description = "TRUSTWATCH_WEBHOOK_SECRET as a literal (prefer secret_ids)."
  type        = string
  default     = null
  sensitive   = true
}

variable "smtp_url" {
  description = "TRUSTWATCH_SMTP_URL (smtp://user:pass@host:port, smtps://...) as a literal (prefer secret_ids)."
  type        = string
  default     = null
  sensitive   = true
}

variable "email_from" {
  description = "TRUSTWATCH_EMAIL_FROM: sender of alert mail."
  type        = string
  default     = null
}

variable "email_to" {
  description = "TRUSTWATCH_EMAIL_TO: comma-separated recipients of alert mail."
  type        = string
  default     = null
}

variable "extra_environment" {
  description = "More environment variables for the function (e.g. TRUSTWATCH_DEDUP_WINDOW)."
  type        = map(string)
  default     = {}
}

variable "memory" {
  description = "Memory of one function instance."
  type        = string
  default     = "512Mi"
}

variable "timeout_s" {
  description = "Function timeout (s): one event and its alerts with retries."
  type        = number
  default     = 60
}

variable "sweep_schedule" {
  description = "Cron schedule (UTC) of the compliance sweep (null: no sweep). Keep TRUSTWATCH_DEDUP_WINDOW (extra_environment, default 5400 s) at least the period plus the catch-up overlap (15 minutes), so a caught-up event the live path already alerted on stays quiet."
  type        = string
  default     = "0 * * * *"
}

variable "max_instances" {
  description = "Upper bound on concurrent function instances."
  type        = number
  default     = 10
}

variable "max_delivery_attempts" {
  description = "Deliveries of one audit entry before it goes to the dead-letter topic (5-100)."
  type        = number
  default     = 10
}

variable "attach_dead_letter" {
  description = "Attach the dead-letter topic to the subscription Eventarc creates for the trigger (Terraform cannot manage that subscription): runs gcloud at apply time. Set false where gcloud is not installed and run the command in the dead_letter_command output by hand."
  type        = bool
  default     = true
}

variable "enable_apis" {
  description = "Enable the APIs the module needs (Cloud Functions, Run, Build, Eventarc, Pub/Sub, Logging, Artifact Registry, Secret Manager, IAM)."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels on every resource that takes them."
  type        = map(string)
  default     = {}
}

variable "remediation_enabled" {
  description = "Put findings back (TRUSTWATCH_REMEDIATION=apply) for identities whose baseline mode is remediate, and grant the function the write permissions that takes (a custom role on remediation_projects). false: dry run, no write permission at all. See README: remediating means setIamPolicy on the project."
  type        = bool
  default     = false
}

variable "remediation_plan" {
  description = "With remediation_enabled = false: true (default) is a dry run, each finding shows the plan, read from the cloud once per finding; false sets TRUSTWATCH_REMEDIATION=off: detection and alerts only, no plan and no read for it (the shortest cold start: no cloud SDK on the event path). Ignored when remediation_enabled is true."
  type        = bool
  default     = true
}

variable "remediation_key_action" {
  description = "TRUSTWATCH_GCP_KEY_ACTION: what remediation does to a user-managed key of an account whose baseline allows none: disable (reversible) or delete. Only this one permission is granted."
  type        = string
  default     = "disable"

  validation {
    condition     = contains(["disable", "delete"], var.remediation_key_action)
    error_message = "remediation_key_action: disable or delete."
  }
}

variable "remediation_projects" {
  description = "The projects whose IAM policies, service accounts, keys and buckets remediation may change (the baseline's gcp.projects); default: project_id only. Projects other than project_id need organization_id (the custom role is then defined on the organization)."
  type        = list(string)
  default     = null
}

variable "remediation_max_age_s" {
  description = "TRUSTWATCH_REMEDIATION_MAX_AGE: an event older than this many seconds (a late delivery, a retry) is only planned, not applied: the state may have been changed since by automation the baseline approves. 0: no limit."
  type        = number
  default     = 3600
}
