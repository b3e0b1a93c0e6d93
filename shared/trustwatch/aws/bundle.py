"""The Lambda bundle: `trustwatch-aws.zip` — `handler.py` at the root, the `trustwatch`
package and the runtime deps vendored as manylinux2014 x86_64 CPython 3.11 wheels
(boto3/botocore are the Lambda runtime's own, so they are not vendored)."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from trustwatch.package import Files, PackageError, tree_files, write_zip

# The Lambda runtime the vendored wheels target; deploy/aws/main.tf uses the same.
AWS_PIP_TARGET = ["--platform", "manylinux2014_x86_64", "--implementation", "cp"]
AWS_PIP_TARGET += ["--python-version", "3.11", "--only-binary=:all:"]
AWS_RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer"}
_VENDOR_SKIP_DIRS = {"__pycache__", "bin"}  # pip's console scripts are not importable


def build(files: Files, requirements: list[str], out_dir: Path) -> list[Path]:
    """The zip Lambda runs: our files, then the vendored wheels."""
    with tempfile.TemporaryDirectory(prefix="trustwatch-vendor-") as tmp:
        vendored = vendor_requirements(requirements, Path(tmp))
        for name, source in vendored.items():
            files.setdefault(name, source)  # our own files win over a dependency's
        zip_path = out_dir / "trustwatch-aws.zip"
        write_zip(files, zip_path)
    return [zip_path]


def vendor_requirements(requirements: list[str], target: Path) -> Files:
    """pip-install the pinned Lambda deps (Linux wheels, whatever this machine is) into
    `target`; return the files to ship. `--no-deps`: the pins are the whole closure."""
    provided = [r for r in requirements if _dist_name(r) in AWS_RUNTIME_PROVIDED]
    if provided:
        raise PackageError(f"the Lambda runtime provides {', '.join(provided)}: do not vendor it")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["--no-input", "--no-compile", "--no-deps", "--target", str(target)]
    command += AWS_PIP_TARGET + requirements
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise PackageError(f"pip could not vendor the AWS dependencies:\n{tail}")
    return dict(tree_files(target, "", skip_dirs=_VENDOR_SKIP_DIRS))


def _dist_name(requirement: str) -> str:
    return re.split(r"[\[=]", requirement, maxsplit=1)[0].lower().replace("_", "-")
