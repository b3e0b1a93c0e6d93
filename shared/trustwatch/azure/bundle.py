"""The Function App bundle: a folder `trustwatch-azure/` (remote build installs its
`requirements.txt`) and `trustwatch-azure.zip` of it."""

from __future__ import annotations

import json
from pathlib import Path

from trustwatch.package import Files, requirements_file, write_tree, write_zip

AZURE_HOST_JSON = {
    "version": "2.0",
    "logging": {"applicationInsights": {"samplingSettings": {"isEnabled": False}}},
    "extensionBundle": {
        "id": "Microsoft.Azure.Functions.ExtensionBundle",
        "version": "[4.*, 5.0.0)",
    },
}


def build(files: Files, requirements: list[str], out_dir: Path) -> list[Path]:
    """The app folder and its zip, with host.json unless functions/azure has its own."""
    files["requirements.txt"] = requirements_file(requirements)
    files.setdefault("host.json", (json.dumps(AZURE_HOST_JSON, indent=2) + "\n").encode())
    folder = out_dir / "trustwatch-azure"
    write_tree(files, folder)
    zip_path = out_dir / "trustwatch-azure.zip"
    write_zip(files, zip_path)
    return [folder, zip_path]
