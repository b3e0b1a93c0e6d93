# trustwatch on GCP: Cloud Audit Logs -> log sink -> Pub/Sub -> Eventarc -> Cloud Function (2nd gen).

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  bundle_path  = coalesce(var.bundle_path, "${path.module}/../../dist/trustwatch-gcp.zip")
  bucket_name  = coalesce(var.bucket_name, "${var.project_id}-${var.name}")
  state_prefix = "state"

  # The Admin Activity audit entries trustwatch.gcp.events turns into changes: serviceName ->
  # the lower-case last segments of their methodNames (SetIamPolicy is also
  # google.cloud.resourcemanager.v3.Projects.SetIamPolicy); written from the code by
  # `trustwatch package gcp` (tests/test_deploy.py checks it is current).
  watched          = jsondecode(file("${path.module}/watched_operations.json"))
  watched_services = keys(local.watched)
  # =~ is an RE2 match (cloud.google.com/logging/docs/view/logging-query-language#regular-expressions)
  watched_methods_regex = "(?i)(^|[.])(${join("|", distinct(flatten(values(local.watched))))})$"
  sink_filter = join(" AND ", [
    "log_id(\"cloudaudit.googleapis.com/activity\")",
    "protoPayload.serviceName=(${join(" OR ", [for s in local.watched_services : "\"${s}\""])})",
    "protoPayload.methodName=~\"${local.watched_methods_regex}\"",
  ])

  baseline_bucket = var.baseline_url == null ? null : split("/", trimprefix(var.baseline_url, "gs://"))[0]
  baseline_object = var.baseline_url == null ? null : trimprefix(trimprefix(var.baseline_url, "gs://"), "${local.baseline_bucket}/")

  # projects/P/secrets/S or S (in project_id) -> (project, secret)
  secrets = {
    for env, id in var.secret_ids : env => {
      project = startswith(id, "projects/") ? split("/", id)[1] : var.project_id
      secret  = startswith(id, "projects/") ? split("/", id)[3] : id
    }
  }

  literal_secrets = { for k, v in {
    TRUSTWATCH_SLACK_WEBHOOK_URL = var.slack_webhook_url
    TRUSTWATCH_TEAMS_WEBHOOK_URL = var.teams_webhook_url
    TRUSTWATCH_WEBHOOK_URL       = var.webhook_url
    TRUSTWATCH_WEBHOOK_SECRET    = var.webhook_secret
    TRUSTWATCH_SMTP_URL          = var.smtp_url
  } : k => v if v != null }

  environment = merge(
    { for k, v in {
      TRUSTWATCH_SWEEP_TOPIC  = google_pubsub_topic.audit.id # the sweep's fan-out
      TRUSTWATCH_BASELINE     = var.baseline_url
      TRUSTWATCH_MIN_SEVERITY = var.min_severity
      TRUSTWATCH_STATE_URL    = "gs://${google_storage_bucket.this.name}/${local.state_prefix}"
      TRUSTWATCH_EMAIL_FROM   = var.email_from
      TRUSTWATCH_EMAIL_TO     = var.email_to
      # dry run unless enabled: the plan is in every finding, nothing is changed
      TRUSTWATCH_REMEDIATION         = var.remediation_enabled ? "apply" : (var.remediation_plan ? "dry-run" : "off")
      TRUSTWATCH_REMEDIATION_MAX_AGE = var.remediation_max_age_s
      TRUSTWATCH_GCP_KEY_ACTION      = var.remediation_key_action
    } : k => v if v != null },
    local.literal_secrets,
    var.extra_environment,
  )

  apis = [
    "cloudfunctions.googleapis.com",
    "run.googleapis.com",
    "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com",
    "eventarc.googleapis.com",
    "pubsub.googleapis.com",
    "logging.googleapis.com",
    "secretmanager.googleapis.com",
    "iam.googleapis.com",
    "cloudresourcemanager.googleapis.com", # the enricher's getIamPolicy reads
    "cloudscheduler.googleapis.com",       # the sweep's schedule
  ]
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  sink_writer  = var.organization_id == null ? google_logging_project_sink.audit[0].writer_identity : google_logging_organization_sink.audit[0].writer_identity
}

resource "google_project_service" "apis" {
  for_each           = var.enable_apis ? toset(local.apis) : toset([])
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# -- storage: the function source and the dedup claims ------------------------------------

resource "google_storage_bucket" "this" {
  project                     = var.project_id
  name                        = local.bucket_name
  location                    = var.region
  uniform_bucket_level_access = true # needed for the prefix-conditioned grant below
  public_access_prevention    = "enforced"
  force_destroy               = true
  labels                      = var.labels

  # A dedup claim's custom time is its expiry; expired claims are only garbage.
  lifecycle_rule {
    condition {
      days_since_custom_time = 2
      matches_prefix         = ["${local.state_prefix}/"]
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket_object" "source" {
  # Content-addressed, so a new bundle redeploys the function.
  name   = "source/trustwatch-gcp-${filemd5(local.bundle_path)}.zip"
  bucket = google_storage_bucket.this.name
  source = local.bundle_path
}

# -- identities ------------------------------------------------------------------------------

resource "google_service_account" "function" {
  project      = var.project_id
  account_id   = "${var.name}-fn"
  display_name = "trustwatch responder (runs the function)"
}

resource "google_service_account" "trigger" {
  project      = var.project_id
  account_id   = "${var.name}-trigger"
  display_name = "trustwatch trigger (Eventarc invokes the function as it)"
}

# Dedup claims: get/create/delete objects under state/ only (listing is a bucket-level
# check the condition denies; the store never lists).
resource "google_storage_bucket_iam_member" "function_state" {
  bucket = google_storage_bucket.this.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.function.email}"

  condition {
    title      = "trustwatch-dedup-prefix"
    expression = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.this.name}/objects/${local.state_prefix}/\")"
  }
}

resource "google_storage_bucket_iam_member" "function_baseline" {
  count  = var.baseline_url == null ? 0 : 1
  bucket = local.baseline_bucket
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.function.email}"

  condition {
    title      = "trustwatch-baseline-object"
    expression = "resource.name == \"projects/_/buckets/${local.baseline_bucket}/objects/${local.baseline_object}\""
  }
}

resource "google_secret_manager_secret_iam_member" "function" {
  for_each  = local.secrets
  project   = each.value.project
  secret_id = each.value.secret
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function.email}"
}

resource "google_project_iam_member" "function_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.function.email}"
}

# What an audit entry may not carry (the policy a SetIamPolicy set, an account's email, a
# bucket's settings after storage.buckets.update, an HMAC key's account after
# storage.hmacKeys.update) the function reads back
# (trustwatch.gcp.enrich): exactly enrich.PERMISSIONS, as a custom role on the watched
# project, or on the organization for an organization sink (its entries name folders and
# the organization too); plus what a remediation plan reads that those do not cover
# (trustwatch.gcp.remediate.READ_PERMISSIONS: a key's state), in every mode, since a dry
# run shows the plan too. tests/test_deploy.py checks both lists against the code.
resource "google_project_iam_custom_role" "reader" {
  count       = var.organization_id == null ? 1 : 0
  project     = var.project_id
  role_id     = "${replace(var.name, "-", "_")}_reader"
  title       = "trustwatch reader"
  description = "Reads the IAM policies, service accounts, bucket settings and HMAC key metadata that audit log entries leave out (trustwatch.gcp.enrich)."
  permissions = [
    "iam.serviceAccountKeys.get",
    "iam.serviceAccounts.get",
    "iam.serviceAccounts.getIamPolicy",
    "resourcemanager.projects.getIamPolicy",
    "storage.buckets.get",
    "storage.buckets.getIamPolicy",
    "storage.hmacKeys.get",
  ]
}

resource "google_project_iam_member" "function_reads" {
  count   = var.organization_id == null ? 1 : 0
  project = var.project_id
  role    = google_project_iam_custom_role.reader[0].id
  member  = "serviceAccount:${google_service_account.function.email}"
}

resource "google_organization_iam_custom_role" "reader" {
  count       = var.organization_id == null ? 0 : 1
  org_id      = var.organization_id
  role_id     = "${replace(var.name, "-", "_")}_reader"
  title       = "trustwatch reader"
  description = "Reads the IAM policies, service accounts, bucket settings and HMAC key metadata that audit log entries leave out (trustwatch.gcp.enrich)."
  permissions = [
    "iam.serviceAccountKeys.get",
    "iam.serviceAccounts.get",
    "iam.serviceAccounts.getIamPolicy",
    "resourcemanager.folders.getIamPolicy",
    "resourcemanager.organizations.getIamPolicy",
    "resourcemanager.projects.getIamPolicy",
    "storage.buckets.get",
    "storage.buckets.getIamPolicy",
    "storage.hmacKeys.get",
  ]
}

resource "google_organization_iam_member" "function_reads" {
  count  = var.organization_id == null ? 0 : 1
  org_id = var.organization_id
  role   = google_organization_iam_custom_role.reader[0].id
  member = "serviceAccount:${google_service_account.function.email}"
}

# -- remediation: the writes, only with remediation_enabled -----------------------------------
# Exactly trustwatch.gcp.remediate.WRITE_PERMISSIONS for the configured key action
# (tests/test_deploy.py compares). setIamPolicy on a project lets the holder grant itself
# anything there: the role is granted on remediation_projects only, and the function's
# code only ever removes the members a finding names.
locals {
  remediation_permissions = [
    "iam.serviceAccounts.setIamPolicy",
    "resourcemanager.projects.setIamPolicy",
    "storage.buckets.setIamPolicy",
    "storage.buckets.update",
    "storage.hmacKeys.update",
  ]
  remediation_key_permission = {
    disable = "iam.serviceAccountKeys.disable"
    delete  = "iam.serviceAccountKeys.delete"
  }
  remediation_projects = var.remediation_enabled ? toset(coalesce(var.remediation_projects, [var.project_id])) : toset([])
  remediator_role      = var.organization_id == null ? one(google_project_iam_custom_role.remediator[*].id) : one(google_organization_iam_custom_role.remediator[*].id)
}

resource "google_project_iam_custom_role" "remediator" {
  count       = var.remediation_enabled && var.organization_id == null ? 1 : 0
  project     = var.project_id
  role_id     = "${replace(var.name, "-", "_")}_remediator"
  title       = "trustwatch remediator"
  description = "Removes the IAM members, disables the keys and restores the bucket settings that trustwatch findings name (trustwatch.gcp.remediate)."
  permissions = concat(local.remediation_permissions, [local.remediation_key_permission[var.remediation_key_action]])
}

resource "google_organization_iam_custom_role" "remediator" {
  count       = var.remediation_enabled && var.organization_id != null ? 1 : 0
  org_id      = var.organization_id
  role_id     = "${replace(var.name, "-", "_")}_remediator"
  title       = "trustwatch remediator"
  description = "Removes the IAM members, disables the keys and restores the bucket settings that trustwatch findings name (trustwatch.gcp.remediate)."
  permissions = concat(local.remediation_permissions, [local.remediation_key_permission[var.remediation_key_action]])
}

resource "google_project_iam_member" "function_remediates" {
  for_each = local.remediation_projects
  project  = each.value
  role     = local.remediator_role
  member   = "serviceAccount:${google_service_account.function.email}"

  lifecycle {
    precondition {
      condition     = var.organization_id != null || each.value == var.project_id
      error_message = "remediation_projects beyond project_id need organization_id (a project's custom role is usable in that project only)."
    }
  }
}

resource "google_cloud_run_v2_service_iam_member" "trigger_invokes" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.responder.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.trigger.email}"
}

# -- events: audit log sink -> topic ----------------------------------------------------------

resource "google_pubsub_topic" "audit" {
  project    = var.project_id
  name       = "${var.name}-audit"
  labels     = var.labels
  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  project    = var.project_id
  name       = "${var.name}-dead-letter"
  labels     = var.labels
  depends_on = [google_project_service.apis]
}

# A topic keeps nothing without a subscription: this one holds the dead letters for reading.
resource "google_pubsub_subscription" "dead_letter" {
  project                    = var.project_id
  name                       = "${var.name}-dead-letter"
  topic                      = google_pubsub_topic.dead_letter.id
  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60
  labels                     = var.labels

  expiration_policy {
    ttl = "" # never expires
  }
}

resource "google_logging_project_sink" "audit" {
  count                  = var.organization_id == null ? 1 : 0
  project                = var.project_id
  name                   = "${var.name}-audit"
  destination            = "pubsub.googleapis.com/${google_pubsub_topic.audit.id}"
  filter                 = local.sink_filter
  unique_writer_identity = true
}

resource "google_logging_organization_sink" "audit" {
  count            = var.organization_id == null ? 0 : 1
  org_id           = var.organization_id
  name             = "${var.name}-audit"
  destination      = "pubsub.googleapis.com/${google_pubsub_topic.audit.id}"
  filter           = local.sink_filter
  include_children = true
}

resource "google_pubsub_topic_iam_member" "sink_publishes" {
  project = var.project_id
  topic   = google_pubsub_topic.audit.name
  role    = "roles/pubsub.publisher"
  member  = local.sink_writer
}

# Pub/Sub forwards undeliverable messages as its own service agent.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

# -- the function -----------------------------------------------------------------------------

resource "google_cloudfunctions2_function" "responder" {
  project     = var.project_id
  location    = var.region
  name        = var.name
  description = "trustwatch: drift responder for the identities Databricks uses"
  labels      = var.labels

  build_config {
    runtime     = "python311"
    entry_point = "on_audit_log"
    source {
      storage_source {
        bucket = google_storage_bucket.this.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory               = var.memory
    timeout_seconds                = var.timeout_s
    max_instance_count             = var.max_instances
    min_instance_count             = 0
    service_account_email          = google_service_account.function.email
    ingress_settings               = "ALLOW_INTERNAL_ONLY" # Eventarc's Pub/Sub push is internal
    all_traffic_on_latest_revision = true
    environment_variables          = local.environment

    dynamic "secret_environment_variables" {
      for_each = local.secrets
      content {
        key        = secret_environment_variables.key
        project_id = secret_environment_variables.value.project
        secret     = secret_environment_variables.value.secret
        version    = "latest"
      }
    }
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic          = google_pubsub_topic.audit.id
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.trigger.email
  }

  depends_on = [
    google_project_service.apis,
    google_secret_manager_secret_iam_member.function,
  ]
}

# Eventarc owns the trigger's push subscription, so Terraform cannot set its dead-letter
# policy; gcloud can, once, after the trigger exists.
locals {
  dead_letter_command = join(" && ", [
    "SUB=$(gcloud eventarc triggers describe '${google_cloudfunctions2_function.responder.event_trigger[0].trigger}' --project '${var.project_id}' --location '${var.region}' --format 'value(transport.pubsub.subscription)')",
    "gcloud pubsub subscriptions update \"$SUB\" --project '${var.project_id}' --dead-letter-topic '${google_pubsub_topic.dead_letter.id}' --max-delivery-attempts ${var.max_delivery_attempts}",
    "gcloud pubsub subscriptions add-iam-policy-binding \"$SUB\" --project '${var.project_id}' --member '${local.pubsub_agent}' --role roles/pubsub.subscriber",
  ])
}

resource "terraform_data" "attach_dead_letter" {
  count            = var.attach_dead_letter ? 1 : 0
  triggers_replace = [google_cloudfunctions2_function.responder.event_trigger[0].trigger, google_pubsub_topic.dead_letter.id, var.max_delivery_attempts]

  provisioner "local-exec" {
    command = local.dead_letter_command
  }

  depends_on = [google_pubsub_topic_iam_member.dead_letter_publisher]
}

# -- the scheduled sweep ----------------------------------------------------------------------

# Cloud Scheduler publishes {"trustwatch": "sweep"} to the function's topic; the function
# fans out one message per baseline project to the same topic, each swept by its own
# invocation (trustwatch.sweep, functions/gcp/main.py).
resource "google_cloud_scheduler_job" "sweep" {
  count       = var.sweep_schedule == null ? 0 : 1
  project     = var.project_id
  region      = var.region
  name        = "${var.name}-sweep"
  description = "trustwatch: scheduled compliance sweep of the baseline's projects"
  schedule    = var.sweep_schedule
  time_zone   = "Etc/UTC"

  pubsub_target {
    topic_name = google_pubsub_topic.audit.id
    data       = base64encode(jsonencode({ trustwatch = "sweep" }))
  }

  depends_on = [google_project_service.apis]
}

# The scheduled sweep (trustwatch.gcp.state) reads each baseline project's state and its
# audit log since the last sweep: exactly state.PERMISSIONS, as a custom role on the
# project, or on the organization when the baseline's projects are below it.
# tests/test_deploy.py checks both lists against the code.
resource "google_project_iam_custom_role" "sweeper" {
  count       = var.organization_id == null ? 1 : 0
  project     = var.project_id
  role_id     = "${replace(var.name, "-", "_")}_sweeper"
  title       = "trustwatch sweeper"
  description = "Reads the IAM policies, service accounts and their keys, buckets, custom roles and Admin Activity audit entries a scheduled sweep compares with the baseline (trustwatch.gcp.state)."
  permissions = [
    "iam.roles.get",
    "iam.serviceAccountKeys.list",
    "iam.serviceAccounts.get",
    "iam.serviceAccounts.getIamPolicy",
    "logging.logEntries.list",
    "resourcemanager.projects.getIamPolicy",
    "storage.buckets.get",
    "storage.buckets.getIamPolicy",
    "storage.hmacKeys.list",
  ]
}

resource "google_project_iam_member" "function_sweeps" {
  count   = var.organization_id == null ? 1 : 0
  project = var.project_id
  role    = google_project_iam_custom_role.sweeper[0].id
  member  = "serviceAccount:${google_service_account.function.email}"
}

resource "google_organization_iam_custom_role" "sweeper" {
  count       = var.organization_id == null ? 0 : 1
  org_id      = var.organization_id
  role_id     = "${replace(var.name, "-", "_")}_sweeper"
  title       = "trustwatch sweeper"
  description = "Reads the IAM policies, service accounts and their keys, buckets, custom roles and Admin Activity audit entries a scheduled sweep compares with the baseline (trustwatch.gcp.state)."
  permissions = [
    "iam.roles.get",
    "iam.serviceAccountKeys.list",
    "iam.serviceAccounts.get",
    "iam.serviceAccounts.getIamPolicy",
    "logging.logEntries.list",
    "resourcemanager.projects.getIamPolicy",
    "storage.buckets.get",
    "storage.buckets.getIamPolicy",
    "storage.hmacKeys.list",
  ]
}

resource "google_organization_iam_member" "function_sweeps" {
  count  = var.organization_id == null ? 0 : 1
  org_id = var.organization_id
  role   = google_organization_iam_custom_role.sweeper[0].id
  member = "serviceAccount:${google_service_account.function.email}"
}

# The fan-out publishes one message per project to the function's own topic.
resource "google_pubsub_topic_iam_member" "function_publishes" {
  project = var.project_id
  topic   = google_pubsub_topic.audit.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.function.email}"
}
