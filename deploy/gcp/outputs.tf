output "function_name" {
  description = "The Cloud Function (2nd gen)."
  value       = google_cloudfunctions2_function.responder.name
}

output "function_service_account" {
  description = "The function's identity (list it in the baseline's actors.responder so its own changes are ignored)."
  value       = google_service_account.function.email
}

output "audit_topic" {
  description = "The Pub/Sub topic the audit log sink writes to."
  value       = google_pubsub_topic.audit.id
}

output "dead_letter_topic" {
  description = "Where entries that failed every delivery go."
  value       = google_pubsub_topic.dead_letter.id
}

output "dead_letter_subscription" {
  description = "Pull subscription holding the dead letters."
  value       = google_pubsub_subscription.dead_letter.id
}

output "sink_writer_identity" {
  description = "The log sink's writer identity (granted pubsub.publisher on the audit topic)."
  value       = local.sink_writer
}

output "sink_filter" {
  description = "The Logging filter of the watched audit entries."
  value       = local.sink_filter
}

output "state_url" {
  description = "TRUSTWATCH_STATE_URL of the dedup claims."
  value       = "gs://${google_storage_bucket.this.name}/${local.state_prefix}"
}

output "bucket" {
  description = "The bucket of the function source and the dedup state."
  value       = google_storage_bucket.this.name
}

output "dead_letter_command" {
  description = "The gcloud commands that attach the dead-letter topic to the Eventarc subscription (run them by hand when attach_dead_letter = false)."
  value       = local.dead_letter_command
}

output "sweep_job" {
  description = "The Cloud Scheduler job that starts each sweep (null without sweep_schedule)."
  value       = var.sweep_schedule == null ? null : google_cloud_scheduler_job.sweep[0].id
}
