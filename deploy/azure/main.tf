# trustwatch on Azure: subscription events -> Event Grid -> Function App (on_event_grid), and
# the Activity Log -> Event Hub -> the same app (on_activity_log), which also sees the
# request bodies Event Grid leaves out. On a schedule the app sweeps each subscription's
# state (on_sweep_schedule -> one Storage queue message per subscription -> on_sweep_unit).

data "azurerm_client_config" "current" {}

locals {
  subscription_id    = coalesce(var.subscription_id, data.azurerm_client_config.current.subscription_id)
  subscription_scope = "/subscriptions/${local.subscription_id}"
  bundle_path        = coalesce(var.bundle_path, "${path.module}/../../dist/trustwatch-azure.zip")

  resource_group_name = var.resource_group_name == null ? azurerm_resource_group.this[0].name : var.resource_group_name
  storage_account_name = coalesce(
    var.storage_account_name,
    "tw${substr(sha1("${local.subscription_id}/${var.name}/${coalesce(var.resource_group_name, "-")}"), 0, 16)}",
  )
  dedup_table = "trustwatchdedup"

  # The scheduled sweep: the queue both sweep functions bind (function_app.py reads its
  # name and the timer's NCRONTAB schedule from these app settings), and the subscriptions
  # the app's identity may read (the baseline's azure.subscriptions should be these).
  sweep_queue         = "trustwatch-sweep"
  sweep_subscriptions = var.sweep_subscription_ids == null ? [local.subscription_id] : var.sweep_subscription_ids

  # Operations trustwatch.azure.events turns into changes (Event Grid filters on
  # data.operationName, case-insensitively); written from the code by `trustwatch package
  # azure` (tests/test_deploy.py checks it is current). The Event Grid subscription below
  # carries Write and Delete events only: the actions in the list (the storage accounts'
  # listKeys, regenerateKey, listAccountSas and listServiceSas, and elevateAccess) reach
  # the function through the Activity Log hub alone.
  watched_operations = flatten(values(jsondecode(file("${path.module}/watched_operations.json"))))

  # The Event Hub trigger reads its connection and hub from these app settings (function_app.py).
  eventhub_connection_setting = "TRUSTWATCH_EVENTHUB_CONNECTION"
  eventhub_name_setting       = "TRUSTWATCH_EVENTHUB_NAME"

  # Remediation (trustwatch.azure.remediate): exactly the write the plans make
  # (WRITE_ACTIONS there; tests/test_deploy.py compares), only when enabled. What the plans
  # read (roleAssignments/read, federatedIdentityCredentials/read) comes with Reader below.
  remediation_actions = [
    "Microsoft.Authorization/roleAssignments/delete",
    "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/delete",
  ]
  remediation_scopes = var.remediation_enabled ? (
    var.remediation_scopes == null ? [local.subscription_scope] : var.remediation_scopes
  ) : []

  key_vault_name = var.key_vault_id == null ? null : element(split("/", var.key_vault_id), 8)
  key_vault_references = {
    for env, secret in var.key_vault_secrets :
    env => "@Microsoft.KeyVault(VaultName=${local.key_vault_name};SecretName=${secret})"
  }
  literal_secrets = { for k, v in {
    TRUSTWATCH_SLACK_WEBHOOK_URL = var.slack_webhook_url
    TRUSTWATCH_TEAMS_WEBHOOK_URL = var.teams_webhook_url
    TRUSTWATCH_WEBHOOK_URL       = var.webhook_url
    TRUSTWATCH_WEBHOOK_SECRET    = var.webhook_secret
    TRUSTWATCH_SMTP_URL          = var.smtp_url
  } : k => v if v != null }

  app_settings = merge(
    {
      # Remote build: the bundle ships requirements.txt, not the packages.
      SCM_DO_BUILD_DURING_DEPLOYMENT      = "true"
      ENABLE_ORYX_BUILD                   = "true"
      (local.eventhub_connection_setting) = azurerm_eventhub_authorization_rule.function_listens.primary_connection_string
      (local.eventhub_name_setting)       = azurerm_eventhub.activity_log.name
      TRUSTWATCH_EVENTHUB_CONSUMER_GROUP  = azurerm_eventhub_consumer_group.function.name
      TRUSTWATCH_MIN_SEVERITY             = var.min_severity
      TRUSTWATCH_STATE_URL                = "${azurerm_storage_account.this.primary_table_endpoint}${local.dedup_table}"
      TRUSTWATCH_SWEEP_SCHEDULE           = var.sweep_schedule
      TRUSTWATCH_SWEEP_QUEUE              = azurerm_storage_queue.sweep.name
      TRUSTWATCH_REMEDIATION              = var.remediation_enabled ? "apply" : (var.remediation_plan ? "dry-run" : "off")
      TRUSTWATCH_REMEDIATION_MAX_AGE      = var.remediation_max_age_s
    },
    { for k, v in {
      TRUSTWATCH_BASELINE   = var.baseline_url
      TRUSTWATCH_EMAIL_FROM = var.email_from
      TRUSTWATCH_EMAIL_TO   = var.email_to
      # the Consumption plan's scale-out limit (README, "Concurrency")
      WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT = var.max_scale_out == null ? null : tostring(var.max_scale_out)
    } : k => v if v != null },
    local.literal_secrets,
    local.key_vault_references,
    var.extra_app_settings,
  )
}

resource "azurerm_resource_group" "this" {
  count    = var.resource_group_name == null ? 1 : 0
  name     = "${var.name}-rg"
  location = var.location
  tags     = var.tags
}

# -- storage: function host, dedup table, Event Grid dead letters --------------------------

resource "azurerm_storage_account" "this" {
  name                            = local.storage_account_name
  resource_group_name             = local.resource_group_name
  location                        = var.location
  account_tier                    = "Standard"
  account_replication_type        = "LRS"
  min_tls_version                 = "TLS1_2"
  allow_nested_items_to_be_public = false
  tags                            = var.tags
}

resource "azurerm_storage_table" "dedup" {
  name                 = local.dedup_table
  storage_account_name = azurerm_storage_account.this.name
}

# The sweep's fan-out: one message per subscription; the Functions host moves a message
# whose sweep keeps failing to trustwatch-sweep-poison after maxDequeueCount (5) tries.
resource "azurerm_storage_queue" "sweep" {
  name               = local.sweep_queue
  storage_account_id = azurerm_storage_account.this.id
}

resource "azurerm_storage_container" "dead_letter" {
  name                  = "event-grid-dead-letters"
  storage_account_id    = azurerm_storage_account.this.id
  container_access_type = "private"
}

# -- Activity Log -> Event Hub -----------------------------------------------------------------

resource "azurerm_eventhub_namespace" "this" {
  name                = "${var.name}-${substr(sha1(local.subscription_id), 0, 8)}"
  resource_group_name = local.resource_group_name
  location            = var.location
  sku                 = var.eventhub_sku
  capacity            = 1
  minimum_tls_version = "1.2"
  tags                = var.tags
}

resource "azurerm_eventhub" "activity_log" {
  name              = "activity-log"
  namespace_id      = azurerm_eventhub_namespace.this.id
  partition_count   = 2
  message_retention = 1
}

resource "azurerm_eventhub_consumer_group" "function" {
  name                = "trustwatch"
  namespace_name      = azurerm_eventhub_namespace.this.name
  eventhub_name       = azurerm_eventhub.activity_log.name
  resource_group_name = local.resource_group_name
}

# Diagnostic settings stream with a namespace rule (Azure requires manage, send and listen).
resource "azurerm_eventhub_namespace_authorization_rule" "activity_log_export" {
  name                = "activity-log-export"
  namespace_name      = azurerm_eventhub_namespace.this.name
  resource_group_name = local.resource_group_name
  listen              = true
  send                = true
  manage              = true
}

# The function only reads, from this one hub.
resource "azurerm_eventhub_authorization_rule" "function_listens" {
  name                = "trustwatch-listen"
  namespace_name      = azurerm_eventhub_namespace.this.name
  eventhub_name       = azurerm_eventhub.activity_log.name
  resource_group_name = local.resource_group_name
  listen              = true
  send                = false
  manage              = false
}

resource "azurerm_monitor_diagnostic_setting" "activity_log" {
  name                           = "${var.name}-activity-log"
  target_resource_id             = local.subscription_scope
  eventhub_name                  = azurerm_eventhub.activity_log.name
  eventhub_authorization_rule_id = azurerm_eventhub_namespace_authorization_rule.activity_log_export.id

  enabled_log {
    category = "Administrative"
  }
}

# -- Entra ID audit log -> the same Event Hub (optional) ----------------------------------------

# Credentials and owners added to applications and service principals are directory
# operations: the Activity Log never shows them, the tenant's audit log does. This
# tenant-wide setting needs a Global Administrator or Security Administrator to apply
# (learn.microsoft.com/entra/identity/monitoring-health/howto-stream-logs-to-event-hub);
# on_activity_log reads its `AuditLogs` records beside the Activity Log's.
resource "azurerm_monitor_aad_diagnostic_setting" "entra_audit_logs" {
  count                          = var.entra_audit_logs ? 1 : 0
  name                           = "${var.name}-entra-audit-logs"
  eventhub_name                  = azurerm_eventhub.activity_log.name
  eventhub_authorization_rule_id = azurerm_eventhub_namespace_authorization_rule.activity_log_export.id

  enabled_log {
    category = "AuditLogs"
  }
}

# -- the function app ----------------------------------------------------------------------------

resource "azurerm_service_plan" "this" {
  name                = "${var.name}-plan"
  resource_group_name = local.resource_group_name
  location            = var.location
  os_type             = "Linux"
  sku_name            = "Y1" # consumption
  tags                = var.tags
}

resource "azurerm_linux_function_app" "this" {
  name                       = "${var.name}-${substr(sha1(local.subscription_id), 0, 8)}"
  resource_group_name        = local.resource_group_name
  location                   = var.location
  service_plan_id            = azurerm_service_plan.this.id
  storage_account_name       = azurerm_storage_account.this.name
  storage_account_access_key = azurerm_storage_account.this.primary_access_key
  https_only                 = true
  zip_deploy_file            = local.bundle_path
  app_settings               = local.app_settings
  tags                       = var.tags

  identity {
    type = "SystemAssigned"
  }

  site_config {
    minimum_tls_version = "1.2"
    ftps_state          = "Disabled"

    application_stack {
      python_version = "3.11"
    }
  }
}

# -- the identity: read role assignments, write dedup claims, delete drift when enabled ---------

resource "azurerm_role_assignment" "reader" {
  scope                = local.subscription_scope
  role_definition_name = "Reader"
  principal_id         = azurerm_linux_function_app.this.identity[0].principal_id
  description          = "trustwatch: read role assignments and access connectors to enrich events"
}

resource "azurerm_role_assignment" "dedup_table" {
  scope                = "${azurerm_storage_account.this.id}/tableServices/default/tables/${azurerm_storage_table.dedup.name}"
  role_definition_name = "Storage Table Data Contributor"
  principal_id         = azurerm_linux_function_app.this.identity[0].principal_id
  description          = "trustwatch: alert dedup claims"
}

# A sweep reads exactly these (trustwatch.azure.state.READ_PERMISSIONS, checked by
# tests/test_deploy.py) in every swept subscription: role assignments (direct and PIM
# eligible) at and above the protected scopes and of each baseline principal, custom role
# definitions, access connectors, user-assigned identities' federated credentials, storage
# accounts, Lighthouse assignments, and the Activity Log for the catch-up.
resource "azurerm_role_definition" "sweep_reader" {
  name        = "${var.name}-sweep-reader-${substr(sha1(join(",", local.sweep_subscriptions)), 0, 8)}"
  scope       = "/subscriptions/${local.sweep_subscriptions[0]}"
  description = "trustwatch: the reads of a scheduled compliance sweep"

  permissions {
    actions = [
      "Microsoft.Authorization/roleAssignments/read",
      "Microsoft.Authorization/roleDefinitions/read",
      "Microsoft.Authorization/roleEligibilityScheduleInstances/read",
      "Microsoft.Databricks/accessConnectors/read",
      "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/read",
      "Microsoft.Storage/storageAccounts/read",
      "Microsoft.ManagedServices/registrationAssignments/read",
      "Microsoft.Insights/eventtypes/values/read",
    ]
    not_actions = []
  }

  assignable_scopes = [for id in local.sweep_subscriptions : "/subscriptions/${id}"]
}

resource "azurerm_role_assignment" "sweep_reader" {
  for_each           = toset(local.sweep_subscriptions)
  scope              = "/subscriptions/${each.value}"
  role_definition_id = azurerm_role_definition.sweep_reader.role_definition_resource_id
  principal_id       = azurerm_linux_function_app.this.identity[0].principal_id
  description        = "trustwatch: scheduled sweep reads"
}

# Remediation: delete the role assignments and federated credentials the baseline does not
# allow, nothing else.
resource "azurerm_role_definition" "remediation" {
  count             = var.remediation_enabled ? 1 : 0
  name              = "${var.name}-remediation-${substr(sha1(local.subscription_id), 0, 8)}"
  scope             = local.remediation_scopes[0]
  description       = "trustwatch: delete role assignments and federated credentials the baseline does not allow"
  assignable_scopes = local.remediation_scopes

  permissions {
    actions     = local.remediation_actions
    not_actions = []
  }
}

resource "azurerm_role_assignment" "remediation" {
  for_each           = toset(local.remediation_scopes)
  scope              = each.value
  role_definition_id = azurerm_role_definition.remediation[0].role_definition_resource_id
  principal_id       = azurerm_linux_function_app.this.identity[0].principal_id
  description        = "trustwatch: put back role assignments (remediation_enabled)"
}

resource "azurerm_role_assignment" "key_vault_secret" {
  for_each             = var.key_vault_secrets
  scope                = "${var.key_vault_id}/secrets/${each.value}"
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_linux_function_app.this.identity[0].principal_id
  description          = "trustwatch: ${each.key} (Key Vault reference)"
}

resource "azurerm_role_assignment" "baseline" {
  count                = var.baseline_container_id == null ? 0 : 1
  scope                = var.baseline_container_id
  role_definition_name = "Storage Blob Data Reader"
  principal_id         = azurerm_linux_function_app.this.identity[0].principal_id
  description          = "trustwatch: read the baseline"
}

# -- subscription events -> Event Grid -> on_event_grid -----------------------------------------

resource "azurerm_eventgrid_system_topic" "subscription" {
  count               = var.existing_system_topic_name == null ? 1 : 0
  name                = "${var.name}-subscription-events"
  resource_group_name = local.resource_group_name
  location            = "global"
  source_resource_id  = local.subscription_scope
  topic_type          = "Microsoft.Resources.Subscriptions"
  tags                = var.tags
}

resource "azurerm_eventgrid_system_topic_event_subscription" "identity_changes" {
  name                = "${var.name}-identity-changes"
  system_topic        = var.existing_system_topic_name == null ? azurerm_eventgrid_system_topic.subscription[0].name : var.existing_system_topic_name
  resource_group_name = local.resource_group_name

  included_event_types = [
    "Microsoft.Resources.ResourceWriteSuccess",
    "Microsoft.Resources.ResourceDeleteSuccess",
  ]

  advanced_filter {
    string_contains {
      key    = "data.operationName"
      values = local.watched_operations
    }
  }

  azure_function_endpoint {
    # The app must be deployed (and its functions indexed) before Event Grid validates this.
    function_id                       = "${azurerm_linux_function_app.this.id}/functions/on_event_grid"
    max_events_per_batch              = 1
    preferred_batch_size_in_kilobytes = 64
  }

  retry_policy {
    max_delivery_attempts = var.event_grid_max_delivery_attempts
    event_time_to_live    = var.event_grid_event_ttl_minutes
  }

  storage_blob_dead_letter_destination {
    storage_account_id          = azurerm_storage_account.this.id
    storage_blob_container_name = azurerm_storage_container.dead_letter.name
  }
}
