"""Reading the baseline from a path, S3, GCS or Azure Blob, and the per-instance cache."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import EXAMPLE_BASELINE
from trustwatch.baseline import BaselineError
from trustwatch.baseline_source import BaselineCache, display_location, load_baseline_from

if TYPE_CHECKING:
    from cloudservers import Azurite, GcsEmulator, MotoServer

pytest_plugins = ["cloudservers"]  # the servers' fixtures; harmless once conftest has it

ALERTING = "version: 1\ndefaults:\n  mode: alert\n"
REMEDIATING = "version: 1\ndefaults:\n  mode: remediate\n"
NOT_YAML = "version: 1\ndefaults: [\n"


def unique_name() -> str:
    from cloudservers import unique_name

    return unique_name()


# --- local path ---------------------------------------------------------------------------


def test_local_path_loads_the_example_baseline() -> None:
    baseline = load_baseline_from(str(EXAMPLE_BASELINE))
    assert baseline.databricks.account_id


def test_missing_local_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(BaselineError, match=r"nope\.yaml.*cannot read file"):
        load_baseline_from(str(missing))


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(BaselineError, match="unsupported location"):
        load_baseline_from("ftp://example.invalid/baseline.yaml")


# --- S3 (moto) ------------------------------------------------------------------------------


@pytest.fixture
def s3_bucket(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; boto3 clients made by the code under test go to moto."""
    for name, value in moto_server.environ().items():
        monkeypatch.setenv(name, value)
    bucket = unique_name()
    moto_server.client("s3").create_bucket(Bucket=bucket)
    return bucket


def test_s3_object_is_read_and_validated(moto_server: MotoServer, s3_bucket: str) -> None:
    moto_server.client("s3").put_object(Bucket=s3_bucket, Key="tw/baseline.yaml", Body=REMEDIATING)
    baseline = load_baseline_from(f"s3://{s3_bucket}/tw/baseline.yaml")
    assert baseline.defaults.mode == "remediate"


def test_s3_missing_key_or_bucket_names_the_location(s3_bucket: str) -> None:
    with pytest.raises(
        BaselineError, match=rf"s3://{s3_bucket}/absent.yaml: .*cannot read: NoSuchKey: no such"
    ):
        load_baseline_from(f"s3://{s3_bucket}/absent.yaml")
    with pytest.raises(BaselineError, match=r"s3://no-such-bucket-tw/b.yaml: .*NoSuchBucket"):
        load_baseline_from("s3://no-such-bucket-tw/b.yaml")
    with pytest.raises(BaselineError, match="expected s3://bucket/object"):
        load_baseline_from(f"s3://{s3_bucket}")


def test_s3_invalid_yaml_names_location_and_line(moto_server: MotoServer, s3_bucket: str) -> None:
    moto_server.client("s3").put_object(Bucket=s3_bucket, Key="bad.yaml", Body=NOT_YAML)
    with pytest.raises(
        BaselineError, match=rf"s3://{s3_bucket}/bad.yaml: .*line \d+: not valid YAML"
    ):
        load_baseline_from(f"s3://{s3_bucket}/bad.yaml")


def test_s3_non_utf8_object_is_refused(moto_server: MotoServer, s3_bucket: str) -> None:
    moto_server.client("s3").put_object(Bucket=s3_bucket, Key="latin1.yaml", Body=b"caf\xe9: 1")
    with pytest.raises(BaselineError, match="not UTF-8"):
        load_baseline_from(f"s3://{s3_bucket}/latin1.yaml")


# --- GCS (gcp-storage-emulator) -------------------------------------------------------------


@pytest.fixture
def gcs_bucket(gcs_emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; storage.Client() made by the code under test goes to the emulator."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.endpoint)
    return gcs_emulator.client().create_bucket(unique_name()).name


def test_gs_object_is_read_and_validated(gcs_emulator: GcsEmulator, gcs_bucket: str) -> None:
    blob = gcs_emulator.client().bucket(gcs_bucket).blob("tw/baseline.yaml")
    blob.upload_from_string(REMEDIATING)
    assert load_baseline_from(f"gs://{gcs_bucket}/tw/baseline.yaml").defaults.mode == "remediate"


def test_gs_missing_object_or_bucket_names_the_location(gcs_bucket: str) -> None:
    with pytest.raises(
        BaselineError, match=rf"gs://{gcs_bucket}/absent.yaml: .*cannot read: HTTP 404: no such"
    ):
        load_baseline_from(f"gs://{gcs_bucket}/absent.yaml")
    with pytest.raises(
        BaselineError, match=r"gs://no-such-bucket-tw/b.yaml: .*cannot read: HTTP 404: no such"
    ):
        load_baseline_from("gs://no-such-bucket-tw/b.yaml")


# --- Azure Blob (Azurite) -------------------------------------------------------------------


@pytest.fixture
def blob_url(azurite_blob: Azurite) -> str:
    """URL of a fresh blob holding REMEDIATING (path-style, as Azurite serves it)."""
    from azure.storage.blob import BlobServiceClient

    container = unique_name()
    service = BlobServiceClient.from_connection_string(azurite_blob.connection_string)
    service.create_container(container).upload_blob("baseline.yaml", REMEDIATING)
    return f"{azurite_blob.endpoint}/{container}/baseline.yaml"


def _sas(azurite: Azurite, url: str, *, expiry: datetime | None = None) -> str:
    from azure.storage.blob import BlobSasPermissions, generate_blob_sas
    from cloudservers import AZURITE_ACCOUNT, AZURITE_KEY

    container, blob = url.removeprefix(azurite.endpoint + "/").split("/", 1)
    return generate_blob_sas(
        AZURITE_ACCOUNT,
        container,
        blob,
        account_key=AZURITE_KEY,
        permission=BlobSasPermissions(read=True),
        expiry=expiry or datetime.now(UTC) + timedelta(hours=1),
    )


def test_blob_url_with_sas_needs_no_other_credential(azurite_blob: Azurite, blob_url: str) -> None:
    url = f"{blob_url}?{_sas(azurite_blob, blob_url)}"
    assert load_baseline_from(url).defaults.mode == "remediate"


def test_blob_url_with_an_account_key_credential(azurite_blob: Azurite, blob_url: str) -> None:
    baseline = load_baseline_from(blob_url, credential=azurite_blob.credential())
    assert baseline.defaults.mode == "remediate"


def test_blob_errors_name_the_location_but_never_the_sas(
    azurite_blob: Azurite, blob_url: str
) -> None:
    absent = blob_url.replace("baseline.yaml", "absent.yaml")
    sas = _sas(azurite_blob, absent)
    with pytest.raises(BaselineError, match="BlobNotFound") as caught:
        load_baseline_from(f"{absent}?{sas}")
    assert str(caught.value).startswith(f"{absent}?<SAS>: ")
    assert "sig=" not in str(caught.value)
    expired = _sas(azurite_blob, blob_url, expiry=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(
        BaselineError, match=r"cannot read: AuthorizationFailure: Server failed to authenticate"
    ):
        load_baseline_from(f"{blob_url}?{expired}")


def test_plain_http_is_only_for_a_local_emulator() -> None:
    url = "http://acct.blob.core.windows.net/c/baseline.yaml?sv=1&sig=secret"
    with pytest.raises(BaselineError, match="use https://") as caught:
        load_baseline_from(url)
    assert "secret" not in str(caught.value)
    assert display_location(url) == "http://acct.blob.core.windows.net/c/baseline.yaml?<SAS>"


# --- the cache ------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def baseline_file(tmp_path: Path) -> Path:
    path = tmp_path / "baseline.yaml"
    path.write_text(ALERTING)
    return path


def test_cache_rereads_only_after_the_ttl(baseline_file: Path) -> None:
    clock = FakeClock()
    cache = BaselineCache(ttl_s=300, clock=clock)
    assert cache.get(str(baseline_file)).defaults.mode == "alert"
    baseline_file.write_text(REMEDIATING)
    clock.now += 299
    assert cache.get(str(baseline_file)).defaults.mode == "alert"  # still fresh
    clock.now += 1
    assert cache.get(str(baseline_file)).defaults.mode == "remediate"


def test_cache_keeps_the_last_good_baseline_when_a_refresh_fails(
    baseline_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    cache = BaselineCache(ttl_s=300, retry_s=30, clock=clock)
    first = cache.get(str(baseline_file))
    baseline_file.write_text(NOT_YAML)
    clock.now += 300
    with caplog.at_level(logging.WARNING, logger="trustwatch.baseline"):
        assert cache.get(str(baseline_file)) is first
    assert "refresh failed" in caplog.text and "not valid YAML" in caplog.text
    baseline_file.unlink()
    clock.now += 29
    assert cache.get(str(baseline_file)) is first  # no new attempt before retry_s
    clock.now += 1
    assert cache.get(str(baseline_file)) is first  # attempted, failed again, still served
    baseline_file.write_text(REMEDIATING)
    clock.now += 30
    assert cache.get(str(baseline_file)).defaults.mode == "remediate"  # recovered


def test_cache_failed_first_load_raises(tmp_path: Path) -> None:
    cache = BaselineCache(clock=FakeClock())
    with pytest.raises(BaselineError, match="cannot read file"):
        cache.get(str(tmp_path / "absent.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(NOT_YAML)
    with pytest.raises(
        BaselineError, match=r"bad\.yaml: invalid baseline: line \d+: not valid YAML"
    ):
        cache.get(str(bad))


def test_cache_keeps_locations_apart(tmp_path: Path, baseline_file: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(REMEDIATING)
    cache = BaselineCache(clock=FakeClock())
    assert cache.get(str(baseline_file)).defaults.mode == "alert"
    assert cache.get(str(other)).defaults.mode == "remediate"


def test_cache_serves_remote_baselines(moto_server: MotoServer, s3_bucket: str) -> None:
    location = f"s3://{s3_bucket}/baseline.yaml"
    moto_server.client("s3").put_object(Bucket=s3_bucket, Key="baseline.yaml", Body=ALERTING)
    clock = FakeClock()
    cache = BaselineCache(ttl_s=60, clock=clock)
    first = cache.get(location)
    moto_server.client("s3").delete_object(Bucket=s3_bucket, Key="baseline.yaml")
    clock.now += 60
    assert cache.get(location) is first  # the object vanished: keep serving
    with pytest.raises(BaselineError, match=rf"{location}: .*cannot read: NoSuchKey"):
        BaselineCache(clock=clock).get(location)  # a new instance has nothing to serve


def test_importing_baseline_source_loads_no_cloud_sdk() -> None:
    import subprocess
    import sys

    code = (
        "import sys; before = set(sys.modules); import trustwatch.baseline_source; "
        "print(sorted(m for m in set(sys.modules) - before "
        "if m.split('.')[0] in {'boto3', 'botocore', 'azure', 'google', 'requests'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
