"""A cloud is a folder: every registered cloud offers the same parts under the same names,
core modules import none of them, and a toy cloud from the tests joins with one line."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from trustwatch import clouds
from trustwatch.baseline import Baseline, BaselineError, parse_baseline
from trustwatch.cli import main
from trustwatch.clouds import CloudFolder, CloudPlugin
from trustwatch.engine import REGISTRY, all_rules
from trustwatch.findings import Finding
from trustwatch.respond import Responder
from trustwatch.schema import Model

PACKAGE = ROOT / "shared" / "trustwatch"
CLOUD_NAMES = clouds.names()
# The modules every cloud folder has (state and remediate join when they exist).
CLOUD_MODULES = (
    "cloud",
    "baseline",
    "events",
    "rules",
    "links",
    "bundle",
    "store",
    "source",
    "graph",
)


def test_the_three_clouds_are_found_in_their_folders() -> None:
    assert CLOUD_NAMES == ("aws", "azure", "gcp")


@pytest.mark.parametrize("name", CLOUD_NAMES)
def test_every_cloud_offers_each_part_under_the_same_name(name: str) -> None:
    cloud = clouds.get(name)
    assert isinstance(cloud, CloudPlugin)
    for module in CLOUD_MODULES:
        assert (PACKAGE / name / f"{module}.py").is_file(), f"{name}/{module}.py"
    section = cloud.baseline_section()
    assert issubclass(section, Model) and dataclasses.is_dataclass(section)
    assert cloud.describe_baseline(section())  # an empty section still says what it counts
    events = cloud.events()
    for function in ("recognizes", "records", "parse", "watched_operations"):
        assert callable(getattr(events, function)), f"{name}.events.{function}"
    watched = cloud.watched_operations()
    assert watched and all(isinstance(ops, tuple) and ops for ops in watched.values())
    cloud.load_rules()
    assert any(r.id.startswith(f"{name}.") for r in all_rules())
    enricher = cloud.enricher({})
    assert enricher is None or callable(enricher)
    assert (ROOT / "functions" / name / cloud.entry_point).is_file()
    assert cloud.check_baseline(Baseline.model_validate({})) == []
    graph = cloud.graph()
    assert graph is not None and callable(graph.draw), f"{name}.graph.draw"


@pytest.mark.parametrize("name", CLOUD_NAMES)
def test_every_cloud_store_offers_its_sweep_state_store(name: str) -> None:
    store = importlib.import_module(f"trustwatch.{name}.store")
    assert callable(store.sweep_store_from_env), f"{name}.store.sweep_store_from_env"
    assert clouds.get(name).sweep_store({}) is None  # its settings unset: none


def _imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _core_modules() -> list[Path]:
    cloud_dirs = {PACKAGE / name for name in CLOUD_NAMES}
    return [p for p in sorted(PACKAGE.rglob("*.py")) if not cloud_dirs & set(p.parents)]


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_core_module_imports_a_cloud_module(path: Path) -> None:
    for name in _imports(path):
        parts = name.split(".")
        assert not (parts[0] == "trustwatch" and len(parts) > 1 and parts[1] in CLOUD_NAMES), (
            f"{path.relative_to(PACKAGE)} imports {name}: core must ask trustwatch.clouds"
        )


# -- a toy cloud from tests/toycloud -----------------------------------------------------------

TOY_BASELINE = """\
version: 1
toy:
  grants:
    reader: [alice]
"""


@pytest.fixture
def toy_cloud() -> Iterator[CloudPlugin]:
    toy = CloudFolder("toy", entry_point="main.py", package="toycloud")
    unregister = clouds.register(toy)  # the one line a new cloud needs
    try:
        yield toy
    finally:
        unregister()
        _forget_toy_modules()


def _forget_toy_modules() -> None:
    """So that the next registration imports (and registers) the toy rules again."""
    for module in [m for m in sys.modules if m == "toycloud" or m.startswith("toycloud.")]:
        del sys.modules[module]


def _grant(member: str) -> dict[str, Any]:
    return {"toyEvent": "Grant", "role": "reader", "member": member, "actor": "mallory"}


def test_a_toy_cloud_replays_through_the_cli(toy_cloud, tmp_path, capsys) -> None:
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text(TOY_BASELINE)
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(_grant("alice")) + "\n" + json.dumps(_grant("eve")) + "\n")
    assert main(["baseline", "validate", str(baseline)]) == 0
    assert "1 toy roles" in capsys.readouterr().out
    code = main(["replay", "--baseline", str(baseline), str(events)])
    out, err = capsys.readouterr()
    assert code == 1, err
    (finding,) = [Finding.model_validate_json(line) for line in out.splitlines()]
    assert (finding.cloud, finding.rule, finding.actual) == ("toy", "toy.grant.unexpected", "eve")


def test_a_toy_cloud_runs_through_the_responder(toy_cloud) -> None:
    sent: list[Finding] = []

    class Recorder:
        def send(self, findings: list[Finding]) -> None:
            sent.extend(findings)

    baseline = parse_baseline(TOY_BASELINE)
    responder = Responder(baseline=lambda: baseline, sender=Recorder(), environ={})
    outcome = responder.handle(_grant("eve"), "toy-event")
    assert [f.rule for f in outcome.findings] == ["toy.grant.unexpected"]
    assert sent == outcome.sent
    from trustwatch.alerts.links import deep_link

    link = deep_link(sent[0])
    assert link is not None and link.url == "https://toy.example/roles/reader"


def test_a_cloud_is_registered_once(toy_cloud) -> None:
    with pytest.raises(ValueError, match="registered already"):
        clouds.register(CloudFolder("toy", entry_point="main.py", package="toycloud"))


def test_unregistering_a_cloud_forgets_its_section_and_rules() -> None:
    toy = CloudFolder("toy", entry_point="main.py", package="toycloud")
    unregister = clouds.register(toy)
    try:
        parse_baseline(TOY_BASELINE)
        toy.load_rules()
        assert "toy.grant.unexpected" in REGISTRY.rules
    finally:
        unregister()
        _forget_toy_modules()
    assert "toy" not in clouds.names()
    assert not any(r.startswith("toy.") for r in REGISTRY.rules)
    with pytest.raises(BaselineError, match=r"toy: unknown field"):
        parse_baseline(TOY_BASELINE)
    finding = {"id": "x", "rule": "toy.r", "severity": "high", "cloud": "toy"}
    finding |= {"scope": "s", "identity": "i", "summary": "s"}
    with pytest.raises(ValueError, match="unknown cloud 'toy'"):
        Finding.model_validate(finding)


def test_register_refuses_an_object_missing_parts() -> None:
    class Half:
        name = "half"
        entry_point = "main.py"

    with pytest.raises(TypeError, match="does not offer every part"):
        clouds.register(Half())  # type: ignore[arg-type]


def test_every_rule_of_every_cloud_is_in_the_readme_rules_table() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [r.id for r in all_rules() if f"| `{r.id}` |" not in readme]
    assert not missing, f"README's rules tables lack: {missing}"
