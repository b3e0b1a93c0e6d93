"""GCP as one folder: the declaration trustwatch.clouds discovers (see CloudFolder)."""

from trustwatch.clouds import CloudFolder

CLOUD = CloudFolder("gcp", entry_point="main.py")
