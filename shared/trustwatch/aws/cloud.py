"""AWS as one folder: the declaration trustwatch.clouds discovers (see CloudFolder)."""

from trustwatch.clouds import CloudFolder

CLOUD = CloudFolder("aws", entry_point="handler.py")
