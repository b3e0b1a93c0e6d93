variable "name" {
  description = "Name (and prefix) of every resource."
  type        = string
  default     = "trustwatch"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name: 3-31 lower-case letters, digits or '-', starting with a letter."
  }
}

variable "location" {
  description = "Azure region of the function app, its storage and its Event Hub."
  type        = string
  default     = "westeurope"
}

variable "resource_group_name" {
  description = "An existing resource group to deploy into; null creates NAME-rg."
  type        = string
  default     = null
}

variable "subscription_id" {
  description = "The subscription whose identity changes are watched (Event Grid system topic, Activity Log export, Reader for enrichment). Default: the provider's subscription."
  type        = string
  default     = null
}

variable "existing_system_topic_name" {
  description = "A subscription may have one Event Grid system topic: name the existing one (in resource_group_name) to subscribe to it instead of creating one."
  type        = string
  default     = null
}

variable "bundle_path" {
  description = "The zip from `trustwatch package azure` (default: dist/trustwatch-azure.zip in the checkout). Deployed with a remote build of its requirements.txt."
  type        = string
  default     = null
}

variable "storage_account_name" {
  description = "Storage account for the function host, the dedup table and the dead letters (3-24 lower-case letters and digits). Default: derived from the subscription, resource group and name."
  type        = string
  default     = null
}

variable "baseline_url" {
  description = "TRUSTWATCH_BASELINE: null = the baseline.yaml bundled in the app; or https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB (set baseline_container_id so the identity may read it)."
  type        = string
  default     = null

  validation {
    condition     = var.baseline_url == null || can(regex("^https://[^/]+\\.blob\\.[^/]+/[^/]+/.+", var.baseline_url))
    error_message = "baseline_url: null (the bundled baseline.yaml) or https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB."
  }
}

variable "baseline_container_id" {
  description = "Resource id of the blob container holding baseline_url (.../storageAccounts/A/blobServices/default/containers/C): the identity gets Storage Blob Data Reader there."
  type        = string
  default     = null
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

variable "key_vault_id" {
  description = "Key Vault (RBAC authorization) holding the secrets named in key_vault_secrets."
  type        = string
  default     = null
}

variable "key_vault_secrets" {
  description = "Key Vault secret names, by the variable they fill: { TRUSTWATCH_SLACK_WEBHOOK_URL = \"trustwatch-slack\" }. Each becomes an app setting @Microsoft.KeyVault(...) reference; the identity gets Key Vault Secrets User on those secrets only."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for k, v in var.key_vault_secrets :
      contains(["TRUSTWATCH_SLACK_WEBHOOK_URL", "TRUSTWATCH_TEAMS_WEBHOOK_URL", "TRUSTWATCH_WEBHOOK_URL", "TRUSTWATCH_WEBHOOK_SECRET", "TRUSTWATCH_SMTP_URL"], k)
      && can(regex("^[A-Za-z0-9-]{1,127}$", v))
    ])
    error_message = "key_vault_secrets: keys are TRUSTWATCH_SLACK_WEBHOOK_URL, TRUSTWATCH_TEAMS_WEBHOOK_URL, TRUSTWATCH_WEBHOOK_URL, TRUSTWATCH_WEBHOOK_SECRET or TRUSTWATCH_SMTP_URL; values are Key Vault secret names."
  }
}

variable "slack_webhook_url" {
  description = "TRUSTWATCH_SLACK_WEBHOOK_URL as a literal (prefer key_vault_secrets: a literal lands in the state and the app settings)."
  type        = string
  default     = null
  sensitive   = true
}

variable "teams_webhook_url" {
  description = "TRUSTWATCH_TEAMS_WEBHOOK_URL as a literal (prefer key_vault_secrets)."
  type        = string
  default     = null
  sensitive   = true
}

variable "webhook_url" {
  description = "TRUSTWATCH_WEBHOOK_URL as a literal (prefer key_vault_secrets)."
  type        = string
  default     = null
  sensitive   = true
}

variable "webhook_secret" {
  description = "TRUSTWATCH_WEBHOOK_SECRET as a literal (prefer key_vault_secrets)."
  type        = string
  default     = null
  sensitive   = true
}

variable "smtp_url" {
  description = "TRUSTWATCH_SMTP_URL (smtp://user:pass@host:port, smtps://...) as a literal (prefer key_vault_secrets)."
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

variable "extra_app_settings" {
  description = "More app settings (e.g. TRUSTWATCH_DEDUP_WINDOW, APPLICATIONINSIGHTS_CONNECTION_STRING)."
  type        = map(string)
  default     = {}
}

variable "eventhub_sku" {
  description = "Event Hubs namespace tier for the Activity Log export (Standard: consumer groups beyond $Default)."
  type        = string
  default     = "Standard"
}

variable "max_scale_out" {
  description = "At most this many Function App instances at once (WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT); null: the Consumption plan's own limit."
  type        = number
  default     = null
}

variable "event_grid_max_delivery_attempts" {
  description = "Event Grid deliveries of one event before it is dead-lettered to the blob container."
  type        = number
  default     = 30
}

variable "event_grid_event_ttl_minutes" {
  description = "How long Event Grid keeps retrying one event before dead-lettering it."
  type        = number
  default     = 1440
}

variable "entra_audit_logs" {
  description = "Stream the tenant's Entra ID audit log (category AuditLogs) to the Activity Log's Event Hub, for azure.sp.credential_added / azure.sp.owner_added. A tenant-wide diagnostic setting: applying it needs Global Administrator or Security Administrator."
  type        = bool
  default     = false
}

variable "sweep_schedule" {
  description = "When the scheduled sweep runs: an NCRONTAB expression with seconds (Azure Functions timer trigger), in UTC. Default: hourly, on the hour."
  type        = string
  default     = "0 0 * * * *"
}

variable "sweep_subscription_ids" {
  description = "The subscriptions the sweep reads (the baseline's azure.subscriptions): the app's identity gets the sweep reader role in each. null: the deployment's subscription."
  type        = list(string)
  default     = null
}

variable "remediation_enabled" {
  description = "Put findings back (TRUSTWATCH_REMEDIATION=apply) for identities whose baseline mode is remediate: the identity gets a custom role holding only Microsoft.Authorization/roleAssignments/delete at remediation_scopes. false: a dry run (findings show the plan), and the identity can read only."
  type        = bool
  default     = false
}

variable "remediation_plan" {
  description = "With remediation_enabled = false: true (default) is a dry run, each finding shows the plan, read from the cloud once per finding; false sets TRUSTWATCH_REMEDIATION=off: detection and alerts only, no plan and no read for it (the shortest cold start: no cloud SDK on the event path). Ignored when remediation_enabled is true."
  type        = bool
  default     = true
}

variable "remediation_scopes" {
  description = "With remediation_enabled: the scopes where the function may delete role assignments (it can delete those at or below them). null: the watched subscription, which holds the protected scopes and wherever a baseline identity can be granted more in it; add a management group id to put back grants made there."
  type        = list(string)
  default     = null
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}

variable "remediation_max_age_s" {
  description = "TRUSTWATCH_REMEDIATION_MAX_AGE: an event older than this many seconds (a late delivery, a retry) is only planned, not applied: the state may have been changed since by automation the baseline approves. 0: no limit."
  type        = number
  default     = 3600
}
