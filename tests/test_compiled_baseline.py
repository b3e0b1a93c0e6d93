"""The compiled baseline (issue #14, cold path): `trustwatch package` validates the baseline
once and writes `baseline.compiled.json`; a function loads that without validating.

The compiled form must be the validated baseline, node for node (the same findings on every
sample event), and a compiled file that is not the compiled form of the YAML beside it
(another hash, format version or model) is refused with a clear error, the YAML used.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from trustwatch.baseline import Baseline, load_baseline
from trustwatch.baseline_source import BaselineCache, load_local_baseline
from trustwatch.compiled import (
    FORMAT_VERSION,
    CompiledBaselineError,
    compile_baseline,
    compiled_path,
    load_compiled,
)
from trustwatch.intake import parse_paths
from trustwatch.package import COMPILED_BASELINE_NAME, build_bundle
from trustwatch.respond import replay

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "baseline.yaml"
LITERALS = ROOT / "tests" / "data" / "baselines" / "compiled-literals.yaml"
BASELINES = [EXAMPLE, LITERALS]
SAMPLE_EVENTS = sorted(
    [*(ROOT / "examples" / "events").glob("*.json")]
    + [
        p
        for cloud in ("aws", "azure", "gcp")
        for p in (ROOT / "tests" / "data" / cloud).glob("*.json")
    ]
)


def _compiled(path: Path) -> bytes:
    return compile_baseline(load_baseline(path), path.read_bytes())


def _same_tree(a: Any, b: Any, where: str = "baseline") -> None:
    """Equal values of the same types, mappings in the same order, the same fields given."""
    assert type(a) is type(b), where
    if isinstance(a, BaseModel):
        assert a.model_fields_set == b.model_fields_set, where
        for name in type(a).model_fields:
            _same_tree(getattr(a, name), getattr(b, name), f"{where}.{name}")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            _same_tree(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            _same_tree(x, y, f"{where}[{index}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("path", BASELINES, ids=lambda p: p.name)
def test_compiled_form_is_the_validated_baseline_node_for_node(path: Path) -> None:
    validated = load_baseline(path)
    loaded = load_compiled(_compiled(path), path.read_bytes())
    _same_tree(validated, loaded)
    assert loaded == validated
    assert loaded.model_dump(mode="json") == validated.model_dump(mode="json")


def test_user_keys_that_look_like_tags_stay_data() -> None:
    """A literal policy document may hold any key, `$model` too: it is never a class name."""
    loaded = load_compiled(_compiled(LITERALS), LITERALS.read_bytes())
    policy = loaded.aws.accounts["444455556666"].roles["DBX-Cross-Account"].inline_policies
    assert policy["tagged"]["$model"] == "os:system"
    assert policy["tagged"]["$dict"] == {"$enum": 1}


def _outcome(baseline: Baseline) -> dict[str, Any]:
    outcome = replay(parse_paths([str(p) for p in SAMPLE_EVENTS]), baseline)
    return {
        "findings": [f.model_dump(mode="json") for f in outcome.findings],
        "skipped": outcome.skipped,
        "not_evaluated": outcome.not_evaluated,
        "errors": outcome.errors,
        "records": outcome.records,
    }


def test_compiled_baseline_gives_the_same_findings_on_every_sample_event() -> None:
    from_yaml = _outcome(load_baseline(EXAMPLE))
    from_compiled = _outcome(load_compiled(_compiled(EXAMPLE), EXAMPLE.read_bytes()))
    assert from_yaml["findings"], "the samples hold drift against the example baseline"
    assert {f["cloud"] for f in from_yaml["findings"]} == {"aws", "azure", "gcp"}
    assert from_compiled == from_yaml


@pytest.fixture
def bundled(tmp_path: Path) -> Path:
    """A function folder as `trustwatch package` lays it out: YAML and compiled form."""
    yaml_path = tmp_path / "baseline.yaml"
    yaml_path.write_bytes(EXAMPLE.read_bytes())
    compiled_path(yaml_path).write_bytes(_compiled(EXAMPLE))
    return yaml_path


def test_the_compiled_form_is_used_when_it_matches(bundled: Path, caplog: Any) -> None:
    with caplog.at_level(logging.WARNING, logger="trustwatch.baseline"):
        loaded = load_local_baseline(bundled)
    assert loaded == load_baseline(EXAMPLE) and not caplog.records
    # the bundle's compiled form decides: a value only it holds is what the loader returns
    document = json.loads(compiled_path(bundled).read_bytes())
    document["baseline"]["fields"]["databricks"]["fields"]["account_id"] = "from-compiled"
    compiled_path(bundled).write_text(json.dumps(document))
    assert load_local_baseline(bundled).databricks.account_id == "from-compiled"


def test_stale_compiled_form_is_refused_and_the_yaml_validated(bundled: Path, caplog: Any) -> None:
    """The YAML changed after packaging (or the compiled file was swapped): hash mismatch."""
    changed = EXAMPLE.read_text().replace(
        "7f3c1a52-0b6e-4d5e-9a31-2c4e8f0d1b77", "11111111-2222-4333-8444-555555555555"
    )
    bundled.write_text(changed)
    with caplog.at_level(logging.WARNING, logger="trustwatch.baseline"):
        loaded = load_local_baseline(bundled)
    assert loaded.databricks.account_id == "11111111-2222-4333-8444-555555555555"
    assert "compiled baseline refused" in caplog.text
    assert "source_sha256 does not match" in caplog.text
    assert str(compiled_path(bundled)) in caplog.text


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (
            lambda d: d.update(format_version=FORMAT_VERSION + 1),
            f"format version {FORMAT_VERSION + 1}",
        ),
        (lambda d: d.update(format="something-else"), "not a compiled trustwatch baseline"),
        (
            lambda d: d["baseline"].update({"$model": "os:system"}),
            "'os:system' is not a trustwatch",
        ),
        (
            lambda d: d["baseline"]["fields"]["defaults"].update(
                {"$model": "trustwatch.nosuch:Model"}
            ),
            "no class 'trustwatch.nosuch:Model'",
        ),
        (lambda d: d["baseline"]["fields"].pop("actors"), "has other fields than this one's"),
        (
            lambda d: d["baseline"]["fields"]["defaults"]["fields"]["min_severity"].update(
                value="urgent"
            ),
            "'urgent' is no trustwatch.findings:Severity",
        ),
        (lambda d: d.update(baseline=[]), "does not hold a baseline"),
    ],
    ids=["version", "format", "foreign-class", "unknown-class", "fields", "enum", "not-a-model"],
)
def test_tampered_compiled_form_is_refused_with_its_reason(
    bundled: Path, caplog: Any, tamper: Any, reason: str
) -> None:
    document = json.loads(compiled_path(bundled).read_bytes())
    tamper(document)
    data = json.dumps(document).encode()
    with pytest.raises(CompiledBaselineError, match=r"compiled\.json: ") as raised:
        load_compiled(data, bundled.read_bytes(), str(compiled_path(bundled)))
    assert reason in str(raised.value)
    compiled_path(bundled).write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="trustwatch.baseline"):
        assert load_local_baseline(bundled) == load_baseline(EXAMPLE)  # the YAML, validated
    assert reason in caplog.text


def test_not_json_is_refused(bundled: Path) -> None:
    with pytest.raises(CompiledBaselineError, match="not JSON"):
        load_compiled(b"{", bundled.read_bytes())


def test_a_bad_yaml_beside_a_compiled_form_is_still_an_error(bundled: Path) -> None:
    """The compiled form names its YAML by hash: an edited, invalid YAML is not hidden."""
    from trustwatch.baseline import BaselineError

    bundled.write_text("version: 2\n")
    with pytest.raises(BaselineError, match="version"):
        BaselineCache().get(str(bundled))


def test_the_bundle_ships_the_compiled_form_of_its_baseline(tmp_path: Path) -> None:
    (zip_path,) = build_bundle("gcp", tmp_path, baseline=EXAMPLE)
    with zipfile.ZipFile(zip_path) as archive:
        source = archive.read("baseline.yaml")
        compiled = archive.read(COMPILED_BASELINE_NAME)
    assert compiled_path(Path("baseline.yaml")).name == COMPILED_BASELINE_NAME
    assert source == EXAMPLE.read_bytes()
    assert load_compiled(compiled, source) == load_baseline(EXAMPLE)
    # reproducible, as every bundle file is
    (again,) = build_bundle("gcp", tmp_path / "again", baseline=EXAMPLE)
    assert again.read_bytes() == zip_path.read_bytes()


_FIRST_EVENT = """
import json, sys
sys.path.insert(0, {function_dir!r})
from handler import lambda_handler
event = json.loads(open({event!r}).read())
result = lambda_handler(event, None)
others = sorted(m for m in sys.modules if m.endswith((".azure.events", ".gcp.events")))
print(json.dumps({{"result": result, "yaml": "yaml" in sys.modules, "other_parsers": others,
                   "validated": bool(sys.modules["trustwatch.schema"]._adapters)}}))
"""


def test_the_aws_function_handles_its_first_event_without_yaml_or_validation(
    tmp_path: Path,
) -> None:
    """What the cold start is spared: the packaged AWS handler judges its first event (a
    Terraform re-apply: no finding, so no sink needed) from the compiled form, with PyYAML
    never imported, no validator (pydantic TypeAdapter) built, and no other cloud's
    event parser loaded."""
    function_dir = tmp_path / "function"
    function_dir.mkdir()
    (function_dir / "handler.py").write_bytes(
        (ROOT / "functions" / "aws" / "handler.py").read_bytes()
    )
    yaml_path = function_dir / "baseline.yaml"
    yaml_path.write_bytes(EXAMPLE.read_bytes())
    compiled_path(yaml_path).write_bytes(_compiled(EXAMPLE))
    envelope = json.loads(
        (ROOT / "examples" / "events" / "aws-trust-backdoor.eventbridge.json").read_text()
    )
    envelope["detail"] = json.loads(
        (ROOT / "examples" / "events" / "aws-terraform-reapply-benign.json").read_text()
    )
    event = tmp_path / "benign.json"
    event.write_text(json.dumps(envelope))
    code = _FIRST_EVENT.format(function_dir=str(function_dir), event=str(event))
    env = {
        "PYTHONPATH": str(ROOT / "shared"),
        "AWS_DEFAULT_REGION": "us-east-1",
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["result"]["errors"] == [] and out["result"]["findings"] == []
    assert out["result"]["skipped"] == [] and out["result"]["not_evaluated"] == []
    assert out == {**out, "yaml": False, "validated": False}
    # intake asks the clouds in order and imports each parser only when a record gets
    # that far: an AWS record never loads Azure's or GCP's
    assert out["other_parsers"] == []
    # the same run without the compiled form validates the YAML (and so needs PyYAML)
    compiled_path(yaml_path).unlink()
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["result"]["findings"] == [] and out["yaml"] is True and out["validated"] is True
