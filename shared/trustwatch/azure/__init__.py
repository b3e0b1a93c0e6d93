"""Azure: Activity Log and Event Grid records -> Changes (`events`), rules (`rules`)."""
