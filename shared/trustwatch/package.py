"""`trustwatch package CLOUD`: build the deployable bundle that `deploy/<cloud>/` ships.

Core gathers the files every bundle has (the entry point of `functions/<cloud>/`, the
`trustwatch` package, a validated baseline and its compiled form) and the pinned
requirements; the cloud's
`bundle.py` shapes them for its platform (see each: Lambda zip with vendored wheels,
Function App folder and zip, Cloud Functions source zip).

Of the `trustwatch` package a bundle holds what its entry point runs, nothing else: the
modules the entry point imports, followed import by import (also the ones imported
inside functions), plus every cloud's `events` and `rules` (intake and the engine load
them by name), plus the package data (`py.typed`). So the CLI, the demo, its local alert
receivers (a self-signed TLS server), the table view and this bundler never ship.

Dependency pins live in `deploy/<cloud>/requirements.txt` (exact `==` pins, so the inputs are
fixed). Zips are reproducible: sorted entries, one timestamp (1980-01-01 or
SOURCE_DATE_EPOCH), 0644 files / 0755 dirs, no bytecode, the same deflate level.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import sys
import time
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from trustwatch import clouds

BASELINE_NAME = "baseline.yaml"  # beside the entry point, where the runtime looks
COMPILED_BASELINE_NAME = "baseline.compiled.json"  # trustwatch.compiled.compiled_path
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold
FILE_MODE, DIR_MODE = 0o644, 0o755
# Never shipped: bytecode, caches, tests, local state of tools.
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"}
_SKIP_DIRS |= {"tests", "test", ".git", ".venv", "dist", "build"}
_SKIP_FILES = re.compile(r"(\.py[co]|\.DS_Store|~|\.swp|^local\.settings\.json)$")
_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[A-Za-z0-9.+!_-]+$")

# archive path -> file on disk or contents
Files = dict[str, Path | bytes]


class PackageError(RuntimeError):
    """The bundle cannot be built; the message says what is missing and where."""


def build_bundle(
    cloud: str,
    out_dir: Path,
    *,
    baseline: Path | None = None,
    project_root: Path | None = None,
) -> list[Path]:
    """Build the bundle for `cloud` into `out_dir`; return the paths written (zip last)."""
    if cloud not in clouds.names():
        known = ", ".join(clouds.names())
        raise PackageError(f"unknown cloud {cloud!r}; expected one of: {known}")
    root = Path(project_root) if project_root else find_project_root()
    write_watched_operations(cloud, root)
    files = _entry_point_files(cloud, root)
    files.update(package_files(cloud, root, files[clouds.get(cloud).entry_point]))
    if baseline is not None:
        files.update(baseline_files(Path(baseline)))
    requirements = read_requirements(root / "deploy" / cloud / "requirements.txt")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    return clouds.get(cloud).bundle(files, requirements, out_dir)


def find_project_root(start: Path | None = None) -> Path:
    """The checkout that holds `functions/` and `shared/trustwatch/` (from here, or cwd)."""
    candidates = [Path(__file__).resolve().parent, (start or Path.cwd()).resolve()]
    for candidate in candidates:
        for folder in (candidate, *candidate.parents):
            if (folder / "functions").is_dir() and (folder / "shared" / "trustwatch").is_dir():
                return folder
    raise PackageError(
        "cannot find the trustwatch checkout (a folder with functions/ and shared/trustwatch/); "
        "run from inside it or pass --project-root"
    )


def read_requirements(path: Path) -> list[str]:
    """Exact `name==version` pins, one a line (comments and blank lines ignored)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise PackageError(f"{path}: cannot read the pinned requirements: {exc.strerror}") from None
    pins = []
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if not _PIN.match(line):
            raise PackageError(f"{path}:{number}: {line!r} is not an exact pin (name==version)")
        pins.append(line)
    if not pins:
        raise PackageError(f"{path}: no requirements pinned")
    return pins


def _entry_point_files(cloud: str, root: Path) -> Files:
    folder = root / "functions" / cloud
    entry = folder / clouds.get(cloud).entry_point
    if not entry.is_file():
        raise PackageError(f"{entry}: the {cloud} entry point is missing")
    files: Files = dict(tree_files(folder, ""))
    files.pop("requirements.txt", None)  # the pinned deploy/<cloud>/requirements.txt rules
    return files


WATCHED_FILE = "watched_operations.json"


def watched_operations_json(cloud: str) -> str:
    """What deploy/<cloud>/watched_operations.json holds: the cloud's watched operations
    (`CloudPlugin.watched_operations`), which its Terraform routes to the function."""
    watched = {source: list(ops) for source, ops in clouds.get(cloud).watched_operations().items()}
    return json.dumps(watched, indent=2) + "\n"


def write_watched_operations(cloud: str, root: Path) -> Path | None:
    """Keep the checkout's deploy/<cloud>/ in step with the code it deploys."""
    folder = root / "deploy" / cloud
    if not folder.is_dir():
        return None
    path = folder / WATCHED_FILE
    text = watched_operations_json(cloud)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def _loaded_by_name(cloud: str) -> list[str]:
    """The modules a function imports by name, not by an import statement: every cloud's
    runtime parts (intake, the engine, the baseline and the stores ask each cloud through
    trustwatch.clouds) and its own cloud's enricher."""
    names = []
    for plugin in clouds.registered():
        package = getattr(plugin, "package", f"trustwatch.{plugin.name}")
        parts = clouds.RUNTIME_PARTS + (clouds.OWN_RUNTIME_PARTS if plugin.name == cloud else ())
        names += [f"{package}.{part}" for part in parts]
    return names


def package_files(cloud: str, root: Path, entry_point: Path | bytes) -> Files:
    """The trustwatch modules the cloud's entry point runs (see the module docstring), and
    the package's data files in the folders of those modules."""
    by_name = _loaded_by_name(cloud)
    package = root / "shared" / "trustwatch"
    if not (package / "__init__.py").is_file():
        raise PackageError(f"{package}: the trustwatch package is missing")
    shipped = set(shipped_modules(package, _contents(entry_point), by_name).values())
    folders = {path.parent for path in shipped}
    files: Files = {}
    for name, path in tree_files(package, "trustwatch/"):
        if path in shipped or (path.suffix != ".py" and _owner(path, package) in folders):
            files[name] = path
    return files


def _owner(path: Path, package: Path) -> Path:
    """The Python package a data file belongs to: its nearest folder with __init__.py."""
    folder = path.parent
    while folder != package and not (folder / "__init__.py").is_file():
        folder = folder.parent
    return folder


def shipped_modules(package: Path, entry_point: bytes, by_name: list[str]) -> dict[str, Path]:
    """trustwatch module name -> its file, for every module the entry point can import
    (by an import statement, or `by_name`, and whatever those import in turn)."""
    found: dict[str, Path] = {}
    todo = [*_imported(entry_point, "", False), *by_name]
    while todo:
        parts = todo.pop().split(".")
        for end in range(1, len(parts) + 1):  # a module's parent packages run first
            name = ".".join(parts[:end])
            if name in found:
                continue
            path = _module_file(package, name)
            if path is None:
                continue  # an attribute (`from trustwatch.x import Name`), not a module
            found[name] = path
            todo += _imported(path.read_bytes(), name, path.name == "__init__.py")
    return found


def _module_file(package: Path, name: str) -> Path | None:
    if name != "trustwatch" and not name.startswith("trustwatch."):
        return None
    base = package.joinpath(*name.split(".")[1:])
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else None


def _imported(source: bytes, module: str, is_package: bool) -> list[str]:
    """Every trustwatch module name `source` imports, anywhere in it (lazy imports too)."""
    here = module if is_package else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from ..y import z
                anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]  # maybe submodules
    return [n for n in names if n == "trustwatch" or n.startswith("trustwatch.")]


def baseline_files(path: Path) -> dict[str, bytes]:
    """The bundle's baseline files: the YAML at `path` and its compiled form
    (`trustwatch.compiled`), validated here with the full model, so a baseline that would
    fail on the first event is refused."""
    from trustwatch.baseline import BaselineError, parse_baseline
    from trustwatch.compiled import compile_baseline

    try:
        source = path.read_bytes()
    except OSError as exc:
        problem = f"cannot read file: {exc.strerror or exc}"
        raise PackageError(str(BaselineError(str(path), [problem]))) from None
    try:
        baseline = parse_baseline(source.decode("utf-8"), str(path))
    except UnicodeDecodeError:
        raise PackageError(str(BaselineError(str(path), ["not UTF-8 text"]))) from None
    except BaselineError as exc:
        raise PackageError(str(exc)) from None
    return {BASELINE_NAME: source, COMPILED_BASELINE_NAME: compile_baseline(baseline, source)}


def tree_files(
    folder: Path, prefix: str, *, skip_dirs: set[str] = _SKIP_DIRS
) -> Iterator[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs)
        base = Path(dirpath)
        for name in sorted(filenames):
            path = base / name
            if _SKIP_FILES.search(name) or not path.is_file():
                continue
            yield prefix + path.relative_to(folder).as_posix(), path


def requirements_file(requirements: list[str]) -> bytes:
    """A requirements.txt of the pins, for platforms that install it themselves."""
    return "".join(f"{r}\n" for r in requirements).encode()


def _contents(source: Path | bytes) -> bytes:
    return source if isinstance(source, bytes) else source.read_bytes()


def _directories(names: list[str]) -> list[str]:
    dirs = {"/".join(n.split("/")[:i]) + "/" for n in names for i in range(1, n.count("/") + 1)}
    return sorted(dirs)


def zip_timestamp(environ: Mapping[str, str] = os.environ) -> tuple[int, int, int, int, int, int]:
    """SOURCE_DATE_EPOCH (UTC, clamped to the zip range) or 1980-01-01 00:00:00."""
    raw = environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return ZIP_EPOCH
    try:
        epoch = int(raw)
    except ValueError:
        raise PackageError(f"SOURCE_DATE_EPOCH={raw!r} is not an integer") from None
    stamp = time.gmtime(max(epoch, 315532800))  # 1980-01-01T00:00:00Z
    return max(ZIP_EPOCH, tuple(stamp[:6]))  # type: ignore[return-value]


def write_zip(files: Files, dest: Path) -> Path:
    """A reproducible zip: the same files give the same bytes."""
    stamp = zip_timestamp()
    names = sorted(files)
    tmp = dest.with_name(dest.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as archive:
        for name in sorted(_directories(names) + names):
            is_dir = name.endswith("/")
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.create_system = 3  # Unix, so the mode bits below are honoured
            if is_dir:
                info.external_attr = ((0o040000 | DIR_MODE) << 16) | 0x10
                archive.writestr(info, b"")
            else:
                info.external_attr = (0o100000 | FILE_MODE) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, _contents(files[name]), compresslevel=9)
    tmp.replace(dest)
    return dest


def write_tree(files: Files, dest: Path) -> Path:
    """The same files as a folder, replacing what was there (fixed modes)."""
    if dest.exists():
        shutil.rmtree(dest)
    for name in sorted(files):
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_contents(files[name]))
        path.chmod(FILE_MODE)
    for folder in [dest, *(dest / d for d in _directories(sorted(files)))]:
        folder.chmod(DIR_MODE)
    return dest


def _package_command(args: argparse.Namespace) -> int:
    root = Path(args.project_root) if args.project_root else None
    try:
        root = root or find_project_root()
        out_dir = Path(args.output) if args.output else root / "dist"
        written = build_bundle(args.cloud, out_dir, baseline=args.baseline, project_root=root)
    except PackageError as exc:
        print(f"trustwatch: package: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


def add_package_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `trustwatch package CLOUD [-o DIR] [--baseline FILE]`."""
    parser = subparsers.add_parser(
        "package",
        help="build the deployable function bundle for deploy/<cloud>/",
        description="Build the function bundle that deploy/<cloud>/ deploys "
        "(reproducible: the same inputs give byte-identical zips).",
    )
    parser.add_argument("cloud", choices=clouds.names())
    parser.add_argument(
        "-o", "--output", metavar="DIR", help="output folder (default: <checkout>/dist)"
    )
    parser.add_argument(
        "--baseline", type=Path, metavar="FILE", help="baseline YAML to bundle (validated)"
    )
    parser.add_argument(
        "--project-root", metavar="DIR", help="the checkout (default: found from here)"
    )
    parser.set_defaults(func=_package_command)
