"""Azure as one folder: the declaration trustwatch.clouds discovers (see CloudFolder)."""

from trustwatch.clouds import CloudFolder

CLOUD = CloudFolder("azure", entry_point="function_app.py")
