output "function_name" {
  description = "The Lambda function."
  value       = aws_lambda_function.responder.function_name
}

output "function_arn" {
  description = "The Lambda function's ARN."
  value       = aws_lambda_function.responder.arn
}

output "role_arn" {
  description = "The function's execution role (list it in the baseline's actors.responder so its own changes are ignored)."
  value       = aws_iam_role.function.arn
}

output "event_rule_arn" {
  description = "The EventBridge rule on IAM/STS CloudTrail calls."
  value       = aws_cloudwatch_event_rule.identity_changes.arn
}

output "state_table_name" {
  description = "DynamoDB table for idempotency and alert dedup (TRUSTWATCH_STATE_TABLE)."
  value       = aws_dynamodb_table.state.name
}

output "dead_letter_queue_url" {
  description = "SQS queue holding events that failed every retry."
  value       = aws_sqs_queue.dead_letter.url
}

output "dead_letter_queue_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dead_letter.arn
}

output "log_group_name" {
  description = "The function's CloudWatch log group."
  value       = aws_cloudwatch_log_group.function.name
}
