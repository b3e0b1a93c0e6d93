"""trustwatch: drift responder for the cloud identities Databricks uses."""

__version__ = "0.1.0"
