"""`trustwatch package`: bundle contents, reproducibility, and that the bundles run.

Fast tests build the gcp and azure bundles (no pip). The slow ones vendor the AWS deps with
pip, then run each bundle's entry point on a real event in a fresh virtualenv that has
only what the cloud's runtime provides.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import EXAMPLE_BASELINE, ROOT
from trustwatch.package import (
    PackageError,
    add_package_command,
    build_bundle,
    package_files,
    read_requirements,
    zip_timestamp,
)

ENTRY = {
    "aws": "functions/aws/handler.py",
    "azure": "functions/azure/function_app.py",
    "gcp": "functions/gcp/main.py",
}


def _names(zip_path: Path) -> list[str]:
    with zipfile.ZipFile(zip_path) as archive:
        return archive.namelist()


def _unpack(zip_path: Path, dest: Path) -> Path:
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(dest)
    return dest


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the checkout's inputs with stub entry points and litter to leave out."""
    root = tmp_path / "project"
    for cloud, entry in ENTRY.items():
        path = root / entry
        path.parent.mkdir(parents=True)
        path.write_text(f"# {cloud} entry point\nimport trustwatch\n")
        shutil.copy(ROOT / "deploy" / cloud / "requirements.txt", _mkdir(root / "deploy" / cloud))
    package = root / "shared" / "trustwatch"
    shutil.copytree(ROOT / "shared" / "trustwatch", package)
    (_mkdir(package / "__pycache__") / "x.cpython-311.pyc").write_bytes(b"\0")
    (_mkdir(package / "tests") / "test_x.py").write_text("")
    (package / "stray.pyc").write_bytes(b"\0")
    (root / "functions" / "azure" / "local.settings.json").write_text("{}")
    return root


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- contents -------------------------------------------------------------------------------


def test_gcp_bundle_has_entry_point_requirements_package_and_baseline(tmp_path: Path) -> None:
    (zip_path,) = build_bundle("gcp", tmp_path, baseline=EXAMPLE_BASELINE)
    assert zip_path == tmp_path / "trustwatch-gcp.zip"
    names = _names(zip_path)
    assert {"main.py", "requirements.txt", "baseline.yaml", "trustwatch/__init__.py"} <= set(names)
    assert "trustwatch/py.typed" in names
    assert names == sorted(names)
    with zipfile.ZipFile(zip_path) as archive:
        assert archive.read("main.py") == (ROOT / ENTRY["gcp"]).read_bytes()
        assert archive.read("baseline.yaml") == EXAMPLE_BASELINE.read_bytes()
        requirements = archive.read("requirements.txt").decode().split()
    assert requirements == read_requirements(ROOT / "deploy/gcp/requirements.txt")
    assert {r.split("==")[0] for r in requirements} >= {
        "functions-framework",
        "google-cloud-storage",
        "google-cloud-logging",
        "pydantic",
        "PyYAML",
        "slack-sdk",
    }


def test_gcp_bundle_without_baseline_has_none(tmp_path: Path) -> None:
    (zip_path,) = build_bundle("gcp", tmp_path)
    assert "baseline.yaml" not in _names(zip_path)


def test_azure_bundle_is_a_function_app_folder_and_its_zip(tmp_path: Path) -> None:
    folder, zip_path = build_bundle("azure", tmp_path, baseline=EXAMPLE_BASELINE)
    assert folder == tmp_path / "trustwatch-azure" and zip_path == tmp_path / "trustwatch-azure.zip"
    on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    in_zip = [n for n in _names(zip_path) if not n.endswith("/")]
    assert on_disk == in_zip
    assert {"function_app.py", "host.json", "requirements.txt", "baseline.yaml"} <= set(in_zip)
    host = json.loads((folder / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    assert host["extensionBundle"]["version"].startswith("[4.")
    pins = {r.split("==")[0] for r in (folder / "requirements.txt").read_text().split()}
    assert pins >= {
        "azure-functions",
        "azure-identity",
        "azure-mgmt-authorization",
        "azure-data-tables",
        "azure-storage-blob",
        "pydantic",
        "PyYAML",
        "slack-sdk",
    }


# -- exactly what each function runs ------------------------------------------------------------

# The trustwatch files every function runs: its responder path (respond, intake, engine,
# and every cloud's runtime parts, which the registry loads by name: cloud, baseline,
# events, rules, links, store — see clouds.RUNTIME_PARTS), the environment set-up
# (runtime, baseline_source), alerting and the dedup stores.
RUNTIME_FILES = {
    "trustwatch/__init__.py",
    "trustwatch/py.typed",
    "trustwatch/remediation.py",
    "trustwatch/sweep.py",
    "trustwatch/sweepstate.py",
    "trustwatch/alerts/__init__.py",
    "trustwatch/alerts/config.py",
    "trustwatch/alerts/digest.py",
    "trustwatch/alerts/dispatch.py",
    "trustwatch/alerts/formats.py",
    "trustwatch/alerts/keepalive.py",
    "trustwatch/alerts/links.py",
    "trustwatch/alerts/mail.py",
    "trustwatch/alerts/render.py",
    "trustwatch/alerts/secrets.py",
    "trustwatch/alerts/sinks.py",
    "trustwatch/alerts/transport.py",
    "trustwatch/aws/__init__.py",
    "trustwatch/aws/bucket_rules.py",
    "trustwatch/aws/buckets.py",
    "trustwatch/aws/events.py",
    "trustwatch/aws/policy/__init__.py",
    "trustwatch/aws/policy/conditions.py",
    "trustwatch/aws/policy/document.py",
    "trustwatch/aws/policy/escalation.py",
    "trustwatch/aws/policy/grants.py",
    "trustwatch/aws/policy/permissions.py",
    "trustwatch/aws/policy/principals.py",
    "trustwatch/aws/policy/trust.py",
    "trustwatch/aws/policy/wildcards.py",
    "trustwatch/aws/rules.py",
    "trustwatch/aws/templates.py",
    "trustwatch/azure/__init__.py",
    "trustwatch/azure/events.py",
    "trustwatch/azure/roles.py",
    "trustwatch/azure/rules.py",
    "trustwatch/baseline.py",
    "trustwatch/baseline_source.py",
    "trustwatch/changes.py",
    "trustwatch/dedup.py",
    "trustwatch/engine.py",
    "trustwatch/findings.py",
    "trustwatch/gcp/__init__.py",
    "trustwatch/gcp/events.py",
    "trustwatch/gcp/rules.py",
    "trustwatch/intake.py",
    "trustwatch/jsontext.py",
    "trustwatch/respond.py",
    "trustwatch/retry.py",
    "trustwatch/runtime.py",
    "trustwatch/stores/__init__.py",
    "trustwatch/alerts/slackretry.py",
    "trustwatch/alerts/templates/digest.html.j2",
    "trustwatch/alerts/templates/email.html.j2",
    "trustwatch/aws/baseline.py",
    "trustwatch/aws/changes.py",
    "trustwatch/aws/cloud.py",
    "trustwatch/aws/links.py",
    "trustwatch/aws/store.py",
    "trustwatch/aws/source.py",
    "trustwatch/azure/source.py",
    "trustwatch/gcp/source.py",
    "trustwatch/azure/actions.py",
    "trustwatch/azure/baseline.py",
    "trustwatch/azure/changes.py",
    "trustwatch/azure/entra.py",
    "trustwatch/azure/cloud.py",
    "trustwatch/azure/links.py",
    "trustwatch/azure/scopes.py",
    "trustwatch/azure/store.py",
    "trustwatch/clouds.py",
    "trustwatch/gcp/baseline.py",
    "trustwatch/gcp/changes.py",
    "trustwatch/gcp/cloud.py",
    "trustwatch/gcp/data/role_permissions.json",
    "trustwatch/gcp/links.py",
    "trustwatch/gcp/roles.py",
    "trustwatch/gcp/store.py",
    "trustwatch/stores/common.py",
    "trustwatch/schema.py",  # the dataclasses pydantic checks at the boundary
    "trustwatch/frozen.py",  # @frozen, the dataclasses on the path
    "trustwatch/compiled.py",  # the bundled baseline's compiled form, read without validation
}
# the bundled baseline: its YAML and the compiled form `trustwatch package` writes beside it
BASELINE_FILES = {"baseline.yaml", "baseline.compiled.json"}
ALLOWED = {
    "aws": RUNTIME_FILES
    | {"handler.py"}
    | BASELINE_FILES
    # the scheduled sweep's state read and CloudTrail catch-up: AWS's only
    | {"trustwatch/aws/state.py", "trustwatch/aws/catchup.py", "trustwatch/aws/bucket_state.py"}
    # puts findings back (boto3 IAM, S3): AWS's only
    | {
        "trustwatch/aws/remediate.py",
        "trustwatch/aws/restore_roles.py",
        "trustwatch/aws/restore_resources.py",
    },
    "azure": RUNTIME_FILES
    | {"function_app.py", "host.json", "requirements.txt"}
    | BASELINE_FILES
    # the ARM read of Event Grid events, the put-back of role assignments, the scheduled
    # sweep's state read: Azure's only
    | {"trustwatch/azure/enrich.py", "trustwatch/azure/remediate.py", "trustwatch/azure/state.py"},
    "gcp": RUNTIME_FILES
    | {"main.py", "requirements.txt"}
    | BASELINE_FILES
    # Cloud Logging's JSON lines and the reads of what an audit entry lacks: GCP's only
    | {"trustwatch/logjson.py", "trustwatch/gcp/enrich.py"}
    | {"trustwatch/gcp/remediate.py"}  # puts findings back (TRUSTWATCH_REMEDIATION=apply)
    # the scheduled sweep's reads and catch-up
    | {"trustwatch/gcp/state.py"},
}
# Test, demo and CLI code, never in a function: the demo's local receivers run a
# self-signed TLS server.
NEVER_SHIPPED = {
    "trustwatch/__main__.py",
    "trustwatch/cli.py",
    "trustwatch/sweep_cli.py",
    "trustwatch/demo.py",
    "trustwatch/aws/demo.py",  # AWS's act in `trustwatch demo` (moto)
    "trustwatch/table.py",
    "trustwatch/package.py",
    "trustwatch/aws/bundle.py",  # each cloud's bundle shape: `trustwatch package` only
    "trustwatch/azure/bundle.py",
    "trustwatch/gcp/bundle.py",
    "trustwatch/alerts/local.py",
    "trustwatch/alerts/receivers.py",
    # the sweep's HTML report: `trustwatch sweep --format html` only
    "trustwatch/report.py",
    "trustwatch/trustgraph.py",
    "trustwatch/templates/__init__.py",
    "trustwatch/aws/graph.py",
    "trustwatch/azure/graph.py",
    "trustwatch/gcp/graph.py",
}


def _files(zip_path: Path) -> set[str]:
    return {n for n in _names(zip_path) if not n.endswith("/")}


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_bundle_holds_exactly_what_its_function_runs(cloud: str, tmp_path: Path) -> None:
    files = _files(build_bundle(cloud, tmp_path, baseline=EXAMPLE_BASELINE)[-1])
    assert files == ALLOWED[cloud]
    assert not files & NEVER_SHIPPED


def test_aws_bundle_ships_the_same_trustwatch_modules_as_it_imports() -> None:
    """The AWS zip's own files, without the slow pip vendoring (the slow test checks the
    built zip against the same list)."""
    files = set(package_files("aws", ROOT, ROOT / ENTRY["aws"]))
    assert files | {"handler.py"} | BASELINE_FILES == ALLOWED["aws"]


def test_every_module_not_shipped_is_listed() -> None:
    """A new module is either run by the functions (then in the allow-lists above) or
    named here as not shipped: nothing lands in a bundle unnoticed."""
    package = ROOT / "shared" / "trustwatch"
    every = {
        "trustwatch/" + p.relative_to(package).as_posix()
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".typed")
    }
    shipped = set().union(*ALLOWED.values())
    assert every - shipped == NEVER_SHIPPED


_REPLAY_IN_BUNDLE = """
import json, sys
from pathlib import Path
import {entry}
import trustwatch
from trustwatch.baseline import load_baseline
from trustwatch.intake import parse_paths
from trustwatch.respond import replay
assert Path(trustwatch.__file__).resolve().is_relative_to(Path.cwd().resolve())
outcome = replay(parse_paths({events!r}), load_baseline("baseline.yaml"))
loaded = sorted(m for m in sys.modules if m.startswith("trustwatch"))
print(json.dumps([sorted(f.rule for f in outcome.findings), outcome.errors, loaded]))
"""


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_unpacked_bundle_replays_every_clouds_example_events(cloud: str, tmp_path: Path) -> None:
    """With only the bundle's trustwatch (deps from this venv), the entry point imports and
    an event of each cloud is parsed and judged: nothing the function runs is missing."""
    written = build_bundle(cloud, tmp_path / "dist", baseline=EXAMPLE_BASELINE)
    bundle = _unpack(written[-1], tmp_path / "unpacked")
    events = [str(p) for p in sorted((ROOT / "examples" / "events").glob("*.json"))]
    entry = Path(ENTRY[cloud]).stem
    result = _run_in(bundle, _REPLAY_IN_BUNDLE.format(entry=entry, events=events))
    assert result.returncode == 0, result.stderr
    rules, errors, loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert errors == []
    assert {r.split(".", 1)[0] for r in rules} == {"aws", "azure", "gcp"}
    assert "trustwatch.cli" not in loaded and "trustwatch.demo" not in loaded


def test_leaves_out_bytecode_tests_and_local_settings(project: Path, tmp_path: Path) -> None:
    for cloud in ("azure", "gcp"):
        written = build_bundle(cloud, tmp_path / "out", project_root=project)
        names = _names(written[-1])
        assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
        assert not [n for n in names if n.startswith("trustwatch/tests")]
        assert "local.settings.json" not in names
        assert "trustwatch/baseline.py" in names


def test_requirements_files_are_exact_pins() -> None:
    for cloud in ("aws", "azure", "gcp"):
        pins = read_requirements(ROOT / "deploy" / cloud / "requirements.txt")
        assert all("==" in p for p in pins)
    aws = {
        p.split("==")[0].lower() for p in read_requirements(ROOT / "deploy/aws/requirements.txt")
    }
    assert not aws & {"boto3", "botocore"}  # the Lambda runtime's own
    assert {"aws-lambda-powertools", "pydantic", "pydantic-core", "pyyaml", "slack-sdk"} <= aws


def test_unpinned_requirement_is_refused(project: Path, tmp_path: Path) -> None:
    (project / "deploy/gcp/requirements.txt").write_text("pydantic>=2\n")
    with pytest.raises(PackageError, match=r"requirements.txt:1: 'pydantic>=2' is not an exact"):
        build_bundle("gcp", tmp_path, project_root=project)


def test_invalid_baseline_is_refused(project: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("databricks: {account_id: 7}\nnope: 1\n")
    with pytest.raises(PackageError, match=r"bad\.yaml"):
        build_bundle("gcp", tmp_path / "out", baseline=bad, project_root=project)
    assert not (tmp_path / "out" / "trustwatch-gcp.zip").exists()


def test_missing_entry_point_is_named(project: Path, tmp_path: Path) -> None:
    (project / ENTRY["gcp"]).unlink()
    with pytest.raises(PackageError, match=r"functions/gcp/main.py: the gcp entry point"):
        build_bundle("gcp", tmp_path, project_root=project)


def test_unknown_cloud(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="unknown cloud 'oci'"):
        build_bundle("oci", tmp_path)


# -- reproducibility ------------------------------------------------------------------------


def test_same_inputs_give_byte_identical_zips(project: Path, tmp_path: Path) -> None:
    first = [
        p.read_bytes()
        for cloud in ("azure", "gcp")
        for p in build_bundle(cloud, tmp_path / "a", project_root=project)
        if p.is_file()
    ]
    # What a checkout, an editor or umask change is not an input: mtimes and modes.
    for path in (project / "shared").rglob("*.py"):
        os.utime(path, (1_900_000_000, 1_900_000_000))
        path.chmod(0o600)
    second = [
        p.read_bytes()
        for cloud in ("azure", "gcp")
        for p in build_bundle(cloud, tmp_path / "b", project_root=project)
        if p.is_file()
    ]
    assert first == second and len(first) == 2


def test_zip_entries_have_fixed_time_and_modes(project: Path, tmp_path: Path) -> None:
    (zip_path,) = build_bundle("gcp", tmp_path, project_root=project)
    with zipfile.ZipFile(zip_path) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    for info in infos:
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        mode = info.external_attr >> 16
        if info.filename.endswith("/"):
            assert stat.S_ISDIR(mode) and stat.S_IMODE(mode) == 0o755
        else:
            assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o644
            assert info.compress_type == zipfile.ZIP_DEFLATED


def test_source_date_epoch_sets_the_timestamp(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert zip_timestamp({}) == (1980, 1, 1, 0, 0, 0)
    assert zip_timestamp({"SOURCE_DATE_EPOCH": "1700000000"}) == (2023, 11, 14, 22, 13, 20)
    assert zip_timestamp({"SOURCE_DATE_EPOCH": "0"}) == (1980, 1, 1, 0, 0, 0)
    with pytest.raises(PackageError, match="SOURCE_DATE_EPOCH"):
        zip_timestamp({"SOURCE_DATE_EPOCH": "soon"})
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    (zip_path,) = build_bundle("gcp", tmp_path, project_root=project)
    with zipfile.ZipFile(zip_path) as archive:
        # zip stores seconds in 2 s steps
        assert {i.date_time for i in archive.infolist()} == {(2023, 11, 14, 22, 13, 20)}


def test_azure_folder_has_fixed_modes(project: Path, tmp_path: Path) -> None:
    folder, _ = build_bundle("azure", tmp_path, project_root=project)
    stale = folder / "stale.txt"
    stale.write_text("from an earlier build")
    folder, _ = build_bundle("azure", tmp_path, project_root=project)
    assert not stale.exists()
    for path in [folder, *folder.rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) == (0o755 if path.is_dir() else 0o644)


# -- the CLI ----------------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trustwatch")
    add_package_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_package_writes_the_bundle_and_prints_its_path(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["package", "gcp", "-o", str(out), "--baseline", str(EXAMPLE_BASELINE)]
    assert _cli([*argv, "--project-root", str(project)]) == 0
    assert capsys.readouterr().out.split() == [str(out / "trustwatch-gcp.zip")]
    assert "baseline.yaml" in _names(out / "trustwatch-gcp.zip")


def test_cli_package_defaults_to_the_checkouts_dist(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(["package", "azure", "--project-root", str(project)]) == 0
    assert (project / "dist" / "trustwatch-azure.zip").is_file()


def test_cli_package_error_is_one_line_and_exit_2(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / ENTRY["azure"]).unlink()
    assert _cli(["package", "azure", "-o", str(tmp_path), "--project-root", str(project)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trustwatch: package: ") and "function_app.py" in err
    assert err.count("\n") == 1


# -- the bundles import and run ---------------------------------------------------------------


def _run_in(bundle: Path, code: str, *, python: str = sys.executable, env: dict | None = None):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTWATCH_")}
    environ.update(env or {})
    environ["PYTHONPATH"] = str(bundle)
    environ["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [python, "-c", code],
        cwd=bundle,
        env=environ,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


_IMPORT_CHECK = """
import sys, trustwatch, trustwatch.baseline, trustwatch.engine
from pathlib import Path
assert Path(trustwatch.__file__).resolve().is_relative_to(Path.cwd().resolve()), trustwatch.__file__
from trustwatch.baseline import load_baseline
load_baseline("baseline.yaml")
print("ok", trustwatch.__version__)
"""


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_trustwatch_imports_from_the_unpacked_bundle(cloud: str, tmp_path: Path) -> None:
    written = build_bundle(cloud, tmp_path / "dist", baseline=EXAMPLE_BASELINE)
    bundle = _unpack(written[-1], tmp_path / "unpacked")
    # The deps come from this venv's site-packages, trustwatch itself from the bundle.
    result = _run_in(bundle, _IMPORT_CHECK)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")


# -- slow: the real bundles in a runtime-like virtualenv --------------------------------------


def _fresh_venv(path: Path, *packages: str) -> str:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    python = str(path / "bin" / "python")
    if packages:
        pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, *packages], check=True, timeout=900)
    return python


def _installed_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def _lambda_compatible() -> bool:
    return (
        sys.platform == "linux"
        and sysconfig.get_platform().endswith("x86_64")
        and sys.version_info[:2] == (3, 11)
    )


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_aws_bundle_runs_in_a_boto3_only_python(tmp_path: Path) -> None:
    if not _lambda_compatible():
        pytest.skip("the vendored wheels are CPython 3.11 manylinux x86_64")
    from trustwatch.alerts.receivers import RecordingHTTPServer

    (zip_path,) = build_bundle("aws", tmp_path / "dist", baseline=EXAMPLE_BASELINE)
    names = set(_names(zip_path))
    assert {"handler.py", "trustwatch/__init__.py", "baseline.yaml"} <= names
    ours = {n for n in _files(zip_path) if n.startswith("trustwatch/") or "/" not in n}
    vendored_top = {n for n in ours if "/" not in n} - ALLOWED["aws"]
    assert ours - vendored_top == ALLOWED["aws"]  # top-level vendored modules (six.py...)
    assert any(n.startswith("pydantic_core/_pydantic_core.") for n in names)
    assert any(n.startswith("aws_lambda_powertools/") for n in names)
    assert not [n for n in names if n.startswith(("boto3/", "botocore/"))]
    assert not [n for n in names if n.endswith(".pyc")]
    # Reproducible with vendored deps too.
    (again,) = build_bundle("aws", tmp_path / "dist2", baseline=EXAMPLE_BASELINE)
    assert again.read_bytes() == zip_path.read_bytes()

    python = _fresh_venv(tmp_path / "venv", f"boto3=={_installed_version('boto3')}")
    bundle = _unpack(zip_path, tmp_path / "task")
    event = ROOT / "examples" / "events" / "aws-trust-backdoor.eventbridge.json"
    code = (
        "import json, handler\n"
        f"event = json.load(open({str(event)!r}))\n"
        "print(json.dumps(handler.lambda_handler(event, None)))\n"
    )
    with RecordingHTTPServer() as slack:
        result = _run_in(
            bundle,
            code,
            python=python,
            env={
                "TRUSTWATCH_SLACK_WEBHOOK_URL": f"{slack.url}/services/T000/B000/XXXX",
                "AWS_DEFAULT_REGION": "us-east-1",
                # no credentials, no instance metadata: the remediator's re-read fails
                # at once (the alert still goes), nothing leaves the machine
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_ACCESS_KEY_ID": "",
                "AWS_SECRET_ACCESS_KEY": "",
                "AWS_SESSION_TOKEN": "",
                "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
                "POWERTOOLS_METRICS_NAMESPACE": "trustwatch",
                "AWS_LAMBDA_FUNCTION_NAME": "trustwatch-test",
            },
        )
        assert result.returncode == 0, result.stderr
        posts = [r for r in slack.requests if r.method == "POST"]
    assert posts, f"no Slack post; handler said: {result.stdout}\n{result.stderr}"
    assert posts[0].path == "/services/T000/B000/XXXX"
    assert "databricks-cross-account" in posts[0].body.decode()
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["findings"] and outcome["sent"] >= 1


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_gcp_bundle_runs_with_its_requirements(tmp_path: Path) -> None:
    from test_gcp_events import COMPUTE, MALLORY, add, pubsub_cloudevent, sa_policy
    from trustwatch.alerts.receivers import RecordingHTTPServer

    (zip_path,) = build_bundle("gcp", tmp_path / "dist", baseline=EXAMPLE_BASELINE)
    bundle = _unpack(zip_path, tmp_path / "src")
    python = _fresh_venv(tmp_path / "venv", "-r", str(bundle / "requirements.txt"))
    # Drift: someone may now mint tokens for the Databricks compute service account.
    entry = sa_policy(COMPUTE, add("roles/iam.serviceAccountTokenCreator", MALLORY))
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(pubsub_cloudevent(entry)))
    code = (
        "import json, main\n"
        "from cloudevents.http import CloudEvent\n"
        f"doc = json.load(open({str(event_file)!r}))\n"
        "data = doc.pop('data')\n"
        "main.on_audit_log(CloudEvent(doc, data))\n"
        "print('handled')\n"
    )
    with RecordingHTTPServer() as slack:
        url = f"{slack.url}/services/T000/B000/XXXX"
        result = _run_in(bundle, code, python=python, env={"TRUSTWATCH_SLACK_WEBHOOK_URL": url})
        posts = [r for r in slack.requests if r.method == "POST"]
    assert result.returncode == 0, result.stderr
    assert "handled" in result.stdout
    assert posts, f"no Slack post; the function said:\n{result.stdout}\n{result.stderr}"
    assert COMPUTE in posts[0].body.decode()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_azure_bundle_runs_with_its_requirements(tmp_path: Path) -> None:
    from test_azure_events import CONNECTOR_PRINCIPAL, ROLE, SUB, assign, load
    from trustwatch.alerts.receivers import RecordingHTTPServer

    folder, _ = build_bundle("azure", tmp_path / "dist", baseline=EXAMPLE_BASELINE)
    python = _fresh_venv(tmp_path / "venv", "-r", str(folder / "requirements.txt"))
    # Drift on the Activity Log path: the access connector's identity made Owner of the
    # subscription. On the Event Grid path: a storage account delete, which needs no ARM
    # read (a storage account write is watched now and would be read from ARM).
    records = assign(CONNECTOR_PRINCIPAL, ROLE["Owner"], f"/subscriptions/{SUB}")
    (tmp_path / "records.json").write_text(json.dumps({"records": records}))
    grid = load("eventgrid-resourcedeletesuccess-storageaccount-msdocs")
    grid = grid[0] if isinstance(grid, list) else grid
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    code = f"""
import datetime, json, types
import azure.functions as func
import function_app
fns = {{f.get_function_name(): f for f in function_app.app.get_functions()}}
assert {{"on_event_grid", "on_activity_log"}} <= set(fns), sorted(fns)
assert {{"on_sweep_schedule", "on_sweep_unit"}} <= set(fns), sorted(fns)
import azure.mgmt.monitor, trustwatch.azure.state  # the sweep's: bundled and installed
doc = json.load(open({str(tmp_path / "grid.json")!r}))
when = datetime.datetime.fromisoformat(doc["eventTime"].replace("Z", "+00:00"))
grid = func.EventGridEvent(id=doc["id"], data=doc["data"], topic=doc.get("topic", ""),
    subject=doc["subject"], event_type=doc["eventType"], event_time=when,
    data_version=doc.get("dataVersion", ""))
fns["on_event_grid"].get_user_function()(grid)
body = open({str(tmp_path / "records.json")!r}, "rb").read()
hub = func.EventHubEvent(body=body, sequence_number=7, partition_key=None)
fns["on_activity_log"].get_user_function()([hub], types.SimpleNamespace(retry_context=None))
print("handled")
"""
    with RecordingHTTPServer() as slack:
        env = {
            "TRUSTWATCH_SLACK_WEBHOOK_URL": f"{slack.url}/services/T000/B000/XXXX",
            "TRUSTWATCH_EVENTHUB_NAME": "activity-log",
            "TRUSTWATCH_EVENTHUB_CONNECTION": "unused",
            "TRUSTWATCH_EVENTHUB_CONSUMER_GROUP": "trustwatch",
        }
        result = _run_in(folder, code, python=python, env=env)
        posts = [r for r in slack.requests if r.method == "POST"]
    assert result.returncode == 0, result.stderr
    assert "handled" in result.stdout
    assert posts, f"no Slack post; the function said:\n{result.stdout}\n{result.stderr}"
    assert CONNECTOR_PRINCIPAL in posts[0].body.decode() or "Owner" in posts[0].body.decode()
