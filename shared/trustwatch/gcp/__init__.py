"""GCP: Cloud Audit Log entries -> Changes (`events`), rules (`rules`)."""
