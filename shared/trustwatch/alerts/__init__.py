"""Alerts: findings to Slack, email (SMTP / SES), Microsoft Teams and signed webhooks.

Immediate, deduplicated, nothing lost: see docs/alerts.md. Importing this package loads
no cloud SDK or Slack client; each sink imports its client on first send.
"""

from trustwatch.alerts.config import AlertConfigError, Routing, load_routing, routing_from_env
from trustwatch.alerts.dispatch import AlertDeliveryError, DeliveryReport, Dispatcher, SinkFailure

__all__ = [
    "AlertConfigError",
    "AlertDeliveryError",
    "DeliveryReport",
    "Dispatcher",
    "Routing",
    "SinkFailure",
    "load_routing",
    "routing_from_env",
]
