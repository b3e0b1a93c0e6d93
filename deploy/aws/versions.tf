terraform {
  # check blocks (1.5) warn when the module is not deployed where IAM events arrive.
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.40: the rule `state` ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS (AssumeRole is read-only).
      version = ">= 5.40, < 7.0"
    }
  }
}
