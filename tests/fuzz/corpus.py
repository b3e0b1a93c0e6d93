"""Where the published audit-event samples live: the one place tests, fuzz helpers and
benchmarks ask.

`tests/data/<cloud>/` holds every sample whose licence allows a copy (see its SOURCES.md),
so a fresh clone has everything its tests read. `TRUSTWATCH_CORPUS` may name an extra
folder of the same layout (`<cloud>/*.json`, e.g. the team handbook's corpus with its
Elastic samples): its files not already in `tests/data` are used too. Unset, only
`tests/data` is read; set to a folder that does not exist, it is reported (`extra_note`)
and ignored — never a failure, never a silent skip of a test.
"""

from __future__ import annotations

import os
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
DATA = TESTS / "data"
CLOUDS = ("aws", "azure", "gcp")


def extra_folder(environ: os._Environ[str] | dict[str, str] = os.environ) -> Path | None:
    """The TRUSTWATCH_CORPUS folder when it is set and exists."""
    value = environ.get("TRUSTWATCH_CORPUS", "").strip()
    if not value:
        return None
    folder = Path(value).expanduser()
    return folder if folder.is_dir() else None


def extra_note() -> str:
    """One line for the test report: which samples are read."""
    value = os.environ.get("TRUSTWATCH_CORPUS", "").strip()
    folder = extra_folder()
    if folder is not None:
        extra = sum(len(_extra_files(c, folder)) for c in CLOUDS)
        return f"corpus: {DATA} + {extra} extra file(s) from TRUSTWATCH_CORPUS={folder}"
    if value:
        return f"corpus: {DATA} only (TRUSTWATCH_CORPUS={value} is not a folder: ignored)"
    return f"corpus: {DATA} (set TRUSTWATCH_CORPUS to add a folder of more samples)"


def _extra_files(cloud: str, folder: Path) -> list[Path]:
    ours = {p.name for p in (DATA / cloud).glob("*.json")}
    return [p for p in sorted((folder / cloud).glob("*.json")) if p.name not in ours]


def corpus_files(cloud: str) -> list[Path]:
    """The cloud's samples: tests/data first, then the extra folder's other files."""
    if cloud not in CLOUDS:
        raise ValueError(f"unknown cloud {cloud!r}")
    files = sorted((DATA / cloud).glob("*.json"))
    if not files:
        raise RuntimeError(f"{DATA / cloud} holds no samples: the checkout is incomplete")
    folder = extra_folder()
    return files + (_extra_files(cloud, folder) if folder is not None else [])


def all_corpus_files() -> list[Path]:
    return [p for cloud in CLOUDS for p in corpus_files(cloud)]


def sample(cloud: str, name: str) -> Path:
    """One sample by file name, wherever it lives (tests/data, else the extra folder)."""
    for path in corpus_files(cloud):
        if path.name == name:
            return path
    raise FileNotFoundError(f"no {cloud} sample {name!r} in {DATA / cloud} or TRUSTWATCH_CORPUS")
