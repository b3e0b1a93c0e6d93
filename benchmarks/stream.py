"""A synthetic but realistic CloudTrail stream (JSON Lines) for the replay benchmark.

Every line is a real published record (tests/data/aws, examples/events; TRUSTWATCH_CORPUS
adds an optional folder of more samples, as in the tests) with fresh
eventID / requestID / eventTime, so no two lines are identical. The mix is what an
organization trail looks like to trustwatch: ~98 % EC2, S3 and STS noise (AssumeRole is
parsed and evaluated, not skipped), ~2 % IAM identity changes, a few on watched roles.
The file is generated once per (size, generator version) into the cache folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "aws"  # the published samples (tests/data/aws/SOURCES.md)
VERSION = 2  # bump when the mix or the templates change: the cached stream is rebuilt
SEED = 20261127

# category, its share of the stream, and (file pattern, relative weight) within it;
# "@name" is a record derived from a real one (_derived), "examples:" reads examples/events
MIX: list[tuple[str, float, list[tuple[str, int]]]] = [
    (
        "ec2",
        0.45,
        [
            ("cloudtrail-ec2-describeinstances-*.json", 6),
            ("cloudtrail-ec2-startinstances-*.json", 2),
            ("cloudtrail-ec2-getpassworddata-*.json", 1),
            ("cloudtrail-ec2-runinstances-*.json", 1),  # 11 KB: rare, as launches are
        ],
    ),
    (
        "s3",
        0.33,
        [("@s3-data", 6), ("cloudtrail-s3-*.json", 1), ("eventbridge-cloudtrail-s3-*.json", 1)],
    ),
    ("sts", 0.20, [("cloudtrail-assumerole-*.json", 3), ("@sts-getcalleridentity", 2)]),
    (
        "identity",
        0.02,
        [
            ("cloudtrail-updateassumerolepolicy-*.json", 1),
            ("cloudtrail-createrole-*.json", 1),
            ("cloudtrail-attach*policy-*.json", 1),
            ("cloudtrail-createaccesskey-*.json", 1),
            ("cloudtrail-createuser-*.json", 1),
            ("cloudtrail-getuserpolicy-*.json", 1),
            ("examples:aws-*.json", 1),
        ],
    ),
]
_EVENT_ID, _REQUEST_ID, _TIME = "@@EVENTID@@", "@@REQUESTID@@", "@@TIME@@"


def _extra_dir() -> Path | None:
    """TRUSTWATCH_CORPUS/aws, the optional extra samples (as in the tests), when present."""
    value = os.environ.get("TRUSTWATCH_CORPUS", "").strip()
    folder = Path(value).expanduser() / "aws" if value else None
    return folder if folder is not None and folder.is_dir() else None


def _samples(pattern: str) -> list[Path]:
    """tests/data/aws files matching the pattern, then the extra folder's other ones."""
    found = sorted(DATA.glob(pattern))
    extra = _extra_dir()
    if extra is not None:
        ours = {p.name for p in found}
        found += [p for p in sorted(extra.glob(pattern)) if p.name not in ours]
    return found


def _mix_tag() -> str:
    """'' for the in-repo samples; a digest of the extra file names otherwise, so a
    stream cached from another sample set is never reused."""
    extra = _extra_dir()
    if extra is None:
        return ""
    names = ",".join(sorted(p.name for p in extra.glob("*.json")))
    return "-x" + hashlib.sha256(names.encode()).hexdigest()[:8]


def _record(doc: dict[str, Any]) -> dict[str, Any]:
    # the stream holds bare CloudTrail records, as a trail's JSON Lines export does
    return doc["detail"] if "detail-type" in doc else doc


def _derived(name: str, folder: Path) -> dict[str, Any]:
    """Common noise the corpus has no sample of, built from a real record of the service."""
    if name == "@s3-data":
        base = json.loads((folder / "eventbridge-cloudtrail-s3-createbucket-c7n.json").read_text())
        record = _record(base)
        record.update(
            eventName="GetObject",
            requestParameters={
                "bucketName": "analytics-raw",
                "key": "2026/11/27/part-0001.parquet",
            },
            responseElements=None,
            readOnly=True,
            eventCategory="Data",
        )
        return record
    base = json.loads((folder / "cloudtrail-assumerole-success-stratus.json").read_text())
    base.update(eventName="GetCallerIdentity", requestParameters=None, responseElements=None)
    return base


def templates() -> dict[str, tuple[list[bytes], list[float]]]:
    """Category -> (serialized records with placeholders for the per-line fields, weights)."""
    folder = DATA
    out: dict[str, tuple[list[bytes], list[float]]] = {}
    for category, _, patterns in MIX:
        lines: list[bytes] = []
        weights: list[float] = []
        for pattern, weight in patterns:
            if pattern.startswith("@"):
                try:
                    docs = [_derived(pattern, folder)]
                except FileNotFoundError:
                    continue
            else:
                if pattern.startswith("examples:"):
                    paths = sorted((ROOT / "examples" / "events").glob(pattern.split(":", 1)[1]))
                else:
                    paths = _samples(pattern)
                docs = [_record(json.loads(p.read_text(), strict=False)) for p in paths]
            lines += [_with_placeholders(d) for d in docs]
            weights += [weight / len(docs)] * len(docs)  # the pattern's weight, shared
        if not lines:
            raise RuntimeError(f"no {category} samples found under {folder}")
        out[category] = (lines, weights)
    return out


def _with_placeholders(record: dict[str, Any]) -> bytes:
    record = dict(record, eventID=_EVENT_ID, requestID=_REQUEST_ID, eventTime=_TIME)
    # compact JSON with escaped control characters: every line is strict JSON
    return json.dumps(record, separators=(",", ":")).encode()


def generate(path: Path, count: int) -> dict[str, int]:
    """Write `count` records to `path` (atomically); returns the count per category."""
    rng = random.Random(SEED)
    pools = templates()
    categories = [c for c, _, _ in MIX]
    weights = [w for _, w, _ in MIX]
    counts = dict.fromkeys(categories, 0)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        chosen = rng.choices(categories, weights, k=count)
        for index, category in enumerate(chosen):
            counts[category] += 1
            lines, line_weights = pools[category]
            line = rng.choices(lines, line_weights)[0]
            uid = f"{rng.getrandbits(128):032x}"
            event_id = f"{uid[:8]}-{uid[8:12]}-{uid[12:16]}-{uid[16:20]}-{uid[20:]}"
            seconds = index // 20  # ~20 records a second, like a busy account
            stamp = f"2026-11-27T{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z"
            line = (
                line.replace(_EVENT_ID.encode(), event_id.encode(), 1)
                .replace(_REQUEST_ID.encode(), uid[::-1].encode(), 1)
                .replace(_TIME.encode(), stamp.encode(), 1)
            )
            out.write(line + b"\n")
    tmp.replace(path)
    return counts


def cached_stream(cache: Path, count: int) -> tuple[Path, dict[str, int]]:
    """The stream of `count` records, generated on first use."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"cloudtrail-stream-v{VERSION}{_mix_tag()}-{count}.jsonl"
    meta = path.with_suffix(".counts.json")
    if path.is_file() and meta.is_file():
        return path, json.loads(meta.read_text())
    counts = generate(path, count)
    meta.write_text(json.dumps(counts))
    return path, counts
