"""The Cloud Functions bundle: `trustwatch-gcp.zip` — `main.py`, `requirements.txt` (the
platform installs it) and the `trustwatch` package."""

from __future__ import annotations

from pathlib import Path

from trustwatch.package import Files, requirements_file, write_zip


def build(files: Files, requirements: list[str], out_dir: Path) -> list[Path]:
    """The source zip Cloud Functions builds from."""
    files["requirements.txt"] = requirements_file(requirements)
    zip_path = out_dir / "trustwatch-gcp.zip"
    write_zip(files, zip_path)
    return [zip_path]
