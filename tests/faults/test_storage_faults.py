"""The data lake through faults: S3 answering 503 or timing out on reads and writes (moto behind a fault
proxy), a folder swap killed half-way, a reference profile cut off between its two files. An outage is
retried and never blamed on the data; a killed write never leaves a day or a profile half there."""

from __future__ import annotations

import json
import os
from datetime import date

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from airflow_mlops import keys
from airflow_mlops.steps import drift, features
from airflow_mlops.storage import DataError, LocalStorage, S3Storage, read_parquet
from tests.conftest import CONN_ID, KEYS, SMALL, churn_data
from tests.faults.proxy import HttpFaults


@pytest.fixture
def s3_faults(s3_client, monkeypatch):
    """The test's bucket, reached through a fault proxy in front of moto; one retry by botocore, and a
    one-second read timeout, so each fault is seen quickly."""
    client, bucket = s3_client
    faults = HttpFaults(client.meta.endpoint_url.removeprefix("http://")).start()
    connection = {
        "conn_type": "aws",
        "login": KEYS["aws_access_key_id"],
        "password": KEYS["aws_secret_access_key"],
        "extra": {
            "endpoint_url": faults.url,
            "region_name": KEYS["region_name"],
            "config_kwargs": {"read_timeout": 1, "connect_timeout": 1, "retries": {"max_attempts": 2}},
        },
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(connection))
    yield faults, S3Storage(bucket, "lake", CONN_ID)
    faults.stop()


@pytest.fixture
def day_frame():
    return churn_data.snapshot(SMALL, 1)


def test_a_transient_503_on_read_and_write_is_retried_and_succeeds(s3_faults, day_frame):
    faults, storage = s3_faults
    put = faults.fail("status", method="PUT", times=1)
    storage.write_parquet("raw/date=2026-01-02/part.parquet", day_frame)
    get = faults.fail("status", method="GET", path="part.parquet", times=1)
    assert len(read_parquet(storage, "raw/date=2026-01-02/part.parquet")) == len(day_frame)
    assert put.hits == get.hits == 1


@pytest.mark.parametrize("fault", ["status", "stall"], ids=["503", "read timeout"])
def test_a_lasting_outage_on_read_is_an_error_to_retry_not_bad_data(s3_faults, day_frame, fault):
    faults, storage = s3_faults
    storage.write_parquet("raw/date=2026-01-02/part.parquet", day_frame)
    faults.fail(fault, method="GET", path="part.parquet")
    with pytest.raises((ClientError, ReadTimeoutError)) as raised:
        read_parquet(storage, "raw/date=2026-01-02/part.parquet")
    assert not isinstance(raised.value, DataError)


def test_a_corrupt_file_is_still_bad_data(s3_faults):
    _, storage = s3_faults
    storage.write_bytes("raw/date=2026-01-02/part.parquet", b"PAR1 not really")
    with pytest.raises(DataError, match=r"cannot read s3://.*part\.parquet"):
        read_parquet(storage, "raw/date=2026-01-02/part.parquet")


def test_a_lasting_outage_on_write_fails_without_a_partial_object(s3_faults, day_frame):
    faults, storage = s3_faults
    faults.fail("status", method="PUT")
    with pytest.raises(ClientError):
        storage.write_parquet("raw/date=2026-01-02/part.parquet", day_frame)
    faults.clear()
    assert not storage.exists("raw/date=2026-01-02/part.parquet")


@pytest.mark.parametrize("crash_at", [1, 2], ids=["first rename", "second rename"])
def test_a_folder_swap_killed_half_way_lists_only_whole_days_and_the_retry_completes(
    spec, tmp_path, monkeypatch, crash_at
):
    storage = LocalStorage(tmp_path / "lake")
    days = [date(2026, 1, 1), date(2026, 1, 2)]
    for index, ds in enumerate(days):
        features.write_offline(storage, spec, ds, churn_data.snapshot(SMALL, index))
    real_replace, calls = os.replace, []

    def crashing_replace(src, dst):
        calls.append(src)
        if len(calls) == crash_at:
            raise KeyboardInterrupt("killed")  # what SIGTERM's handler leaves: the process stops here
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crashing_replace)
    with pytest.raises(KeyboardInterrupt):
        features.write_offline(storage, spec, days[1], churn_data.snapshot(SMALL, 1))
    monkeypatch.setattr(os, "replace", real_replace)
    hidden = [p.name for p in storage.path(keys.offline_prefix(spec)).iterdir() if p.name.startswith(".")]
    assert hidden, "the crash must leave the swap's hidden folders behind, or the test shows nothing"
    assert features.offline_days(storage, spec) == [str(d) for d in days[: 2 if crash_at == 1 else 1]]
    assert features.newest_partition(storage, spec) in days

    features.write_offline(storage, spec, days[1], churn_data.snapshot(SMALL, 1))
    assert features.offline_days(storage, spec) == [str(d) for d in days]
    files = storage.files(keys.offline_prefix(spec), ".parquet")
    assert files == [f"{keys.offline_partition(spec, d)}/part.parquet" for d in days]


def test_a_profile_cut_off_between_its_files_is_rebuilt_not_read(s3_faults, spec):
    """On S3 each file is its own PUT: a kill after the first leaves only the sample, never a
    ``profile.json`` without it, so the next drift run rebuilds the profile."""
    faults, storage = s3_faults
    reference = churn_data.snapshot(SMALL, 0)
    profile = drift.build_profile(reference, spec.data)
    faults.fail("refuse", method="PUT", path="profile.json")
    with pytest.raises(Exception):  # noqa: B017 - whatever the client raises for a dropped connection
        profile.save(storage, "reports/reference/version=1")
    faults.clear()
    assert drift.ReferenceProfile.load(storage, "reports/reference/version=1") is None
    profile.save(storage, "reports/reference/version=1")
    assert drift.ReferenceProfile.load(storage, "reports/reference/version=1") is not None
    storage.delete("reports/reference/version=1/reference_sample.parquet")  # an older, out-of-order write
    assert drift.ReferenceProfile.load(storage, "reports/reference/version=1") is None
