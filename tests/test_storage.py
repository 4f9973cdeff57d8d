"""The data lake contract, held by both implementations: a local folder, and an S3 prefix on a real
S3-compatible server (moto's, as its own process) reached through the Amazon provider's hook."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from airflow_mlops import keys
from airflow_mlops.storage import DataError, LocalStorage, S3Storage, Storage, open_storage, read_partition
from tests.conftest import CONN_ID, day


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "lake")
    _, bucket = request.getfixturevalue("s3_client")
    return S3Storage(bucket, "team/lake", CONN_ID)


def test_files_are_written_listed_and_read_back(lake: Storage):
    lake.write_bytes("reports/date=2026-01-02/drift.json", b"{}")
    lake.write_bytes("reports/date=2026-01-01/drift.json", b'{"share": 0.1}')
    lake.write_bytes("reports/date=2026-01-01/.drift.json.tmp", b"hidden")
    lake.write_bytes("reports/date=2026-01-01/drift.html", b"<html/>")
    lake.write_bytes("reports-old/x.json", b"{}")  # a sibling sharing the prefix's first characters

    assert lake.files("reports", ".json") == [
        "reports/date=2026-01-01/drift.json",
        "reports/date=2026-01-02/drift.json",
    ]
    assert lake.read_bytes("reports/date=2026-01-01/drift.json") == b'{"share": 0.1}'
    assert lake.exists("reports/date=2026-01-01") and lake.exists("reports/date=2026-01-01/drift.html")
    assert not lake.exists("reports/date=2026-01-03") and not lake.exists("reports/date=2026-01")
    assert lake.files("nothing/here") == []
    with pytest.raises(FileNotFoundError, match=r"reports/date=2026-01-03/drift\.json"):
        lake.read_bytes("reports/date=2026-01-03/drift.json")


def test_locations_name_the_file_and_map_back_to_keys(lake: Storage):
    location = lake.write_bytes("training_sets/as_of=2026-01-10/training_set.parquet", b"PAR1")
    assert location == lake.location("training_sets/as_of=2026-01-10/training_set.parquet")
    assert location.endswith("as_of=2026-01-10/training_set.parquet")
    assert lake.key_of(location) == "training_sets/as_of=2026-01-10/training_set.parquet"
    with pytest.raises(DataError, match="not inside the storage root"):
        lake.key_of("/somewhere/else/training_set.parquet")


def test_keys_cannot_escape_the_root(lake: Storage):
    with pytest.raises(DataError, match="escapes the storage root"):
        lake.write_bytes("../neighbour/file.json", b"{}")
    with pytest.raises(DataError, match="escapes the storage root"):
        lake.files("raw/../../other")


def test_replace_folder_leaves_exactly_the_new_files(lake: Storage):
    lake.replace_folder("offline/date=2026-01-01", {"part.parquet": b"v1", "extra.parquet": b"old"})
    lake.replace_folder("offline/date=2026-01-01", {"part.parquet": b"v2"})
    assert lake.files("offline") == ["offline/date=2026-01-01/part.parquet"]
    assert lake.read_bytes("offline/date=2026-01-01/part.parquet") == b"v2"


def test_move_replaces_the_target_folder_and_removes_the_source(lake: Storage):
    lake.write_bytes("raw/date=2026-01-04/customers.parquet", b"corrupt")
    lake.write_bytes("quarantine/date=2026-01-04/stale.parquet", b"from an earlier run")
    lake.move("raw/date=2026-01-04", "quarantine/date=2026-01-04")
    assert lake.files("quarantine") == ["quarantine/date=2026-01-04/customers.parquet"]
    assert not lake.exists("raw/date=2026-01-04")

    lake.move("quarantine/date=2026-01-04/customers.parquet", "archive/customers.parquet")  # a single file
    assert lake.read_bytes("archive/customers.parquet") == b"corrupt"
    with pytest.raises(FileNotFoundError):
        lake.move("raw/date=2026-01-04", "anywhere")


def test_delete_removes_files_and_folders_and_ignores_missing_keys(lake: Storage):
    lake.write_bytes("predictions/date=2026-01-01/predictions.parquet", b"1")
    lake.write_bytes("predictions/date=2026-01-02/predictions.parquet", b"2")
    lake.delete("predictions/date=2026-01-01")
    lake.delete("predictions/date=2026-01-02/predictions.parquet")
    lake.delete("predictions/date=2026-01-09")
    assert lake.files("predictions") == []


def test_parquet_partitions_round_trip_and_bad_files_are_named(lake: Storage):
    frame = pd.DataFrame({"customer_id": [1, 2], "monthly_charges": [10.5, 20.0]})
    lake.write_parquet("raw/customers/date=2026-01-01/customers.parquet", frame)
    pd.testing.assert_frame_equal(read_partition(lake, "raw/customers/date=2026-01-01"), frame)
    lake.write_bytes("raw/customers/date=2026-01-02/customers.parquet", b"PAR1 not parquet")
    with pytest.raises(DataError, match=r"cannot read .*date=2026-01-02/customers\.parquet"):
        read_partition(lake, "raw/customers/date=2026-01-02")


def test_open_storage_dispatches_on_the_root_uri(tmp_path: Path):
    assert open_storage("s3://bucket/team/lake/", "my_aws") == S3Storage("bucket", "team/lake", "my_aws")
    assert open_storage("s3://bucket").uri == "s3://bucket"
    assert open_storage(tmp_path.as_uri()) == LocalStorage(tmp_path)
    with pytest.raises(ValueError, match="names no bucket"):
        open_storage("s3:///lake")
    with pytest.raises(ValueError, match="unsupported storage root 'gs://b/lake'"):
        open_storage("gs://b/lake")


def test_feast_point_in_time_join_reads_offline_partitions_on_s3(s3_client, spec, scenario_root, tmp_path):
    """The same Feast definitions and join on an S3 lake (LakeOfflineStore) as on a local one (DuckDB)."""
    from airflow_mlops.steps import features

    _, bucket = s3_client
    lakes = {"local": LocalStorage(tmp_path / "lake"), "s3": S3Storage(bucket, "lake", CONN_ID)}
    offline_stores = {
        "local": {"type": "duckdb"},
        "s3": {"type": "airflow_mlops.feature_store.lake_offline_store.LakeOfflineStore", "aws_conn_id": CONN_ID},
    }
    raw = LocalStorage(scenario_root)
    joined = {}
    for name, storage in lakes.items():
        for offset in range(4):
            frame = read_partition(raw, f"{spec.data.raw_path}/date={day(offset)}")
            features.write_offline(storage, spec, day(offset), frame)
        target = features.FeastTarget(
            {
                "project": f"pit_{name}",
                "registry": {"registry_type": "sql", "path": f"sqlite:///{tmp_path / name}-registry.db"},
                "online_store": {"type": "sqlite", "path": str(tmp_path / f"{name}-online.db")},
                "offline_store": offline_stores[name],
            }
        )
        store = target.store()
        features.apply(store, spec, storage)
        assert store.get_feature_view(spec.features.feature_view).batch_source.path == storage.location(
            keys.offline_prefix(spec)
        )
        entities = pd.DataFrame(
            {
                spec.data.entity_key: [1, 2, 3],
                spec.data.timestamp_column: pd.to_datetime([day(1), day(3), day(3) + timedelta(hours=12)], utc=True),
            }
        )
        joined[name] = store.get_historical_features(
            entity_df=entities, features=[f"{spec.features.feature_view}:{c}" for c in spec.data.feature_names]
        ).to_df()
    local, remote = (joined[k].sort_values(spec.data.entity_key).reset_index(drop=True) for k in ("local", "s3"))
    assert len(remote) == 3 and remote[spec.data.feature_names].notna().all().all()
    pd.testing.assert_frame_equal(remote[local.columns], local, check_dtype=False)
