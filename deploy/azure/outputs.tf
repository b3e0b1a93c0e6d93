output "function_app_name" {
  description = "The Function App."
  value       = azurerm_linux_function_app.this.name
}

output "function_app_id" {
  description = "The Function App's resource id."
  value       = azurerm_linux_function_app.this.id
}

output "principal_id" {
  description = "The app's managed identity (list it in the baseline's actors.responder so its own changes are ignored)."
  value       = azurerm_linux_function_app.this.identity[0].principal_id
}

output "resource_group_name" {
  description = "Where everything was deployed."
  value       = local.resource_group_name
}

output "storage_account_name" {
  description = "Function host storage, the dedup table and the dead-letter container."
  value       = azurerm_storage_account.this.name
}

output "state_url" {
  description = "TRUSTWATCH_STATE_URL: the dedup table."
  value       = "${azurerm_storage_account.this.primary_table_endpoint}${local.dedup_table}"
}

output "dead_letter_container" {
  description = "Blob container of events Event Grid could not deliver."
  value       = azurerm_storage_container.dead_letter.name
}

output "eventhub_namespace" {
  description = "The Event Hubs namespace the Activity Log streams to."
  value       = azurerm_eventhub_namespace.this.name
}

output "eventhub_name" {
  description = "The hub the on_activity_log function reads."
  value       = azurerm_eventhub.activity_log.name
}

output "sweep_queue" {
  description = "The Storage queue of sweep messages, one per subscription (failed ones end in <name>-poison)."
  value       = azurerm_storage_queue.sweep.name
}
