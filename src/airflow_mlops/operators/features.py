"""The feature pipeline's operators: publish a validated day to the offline and online stores."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_mlops import keys
from airflow_mlops.lineage import feature_view_dataset, lake_dataset
from airflow_mlops.links import FeatureViewLink
from airflow_mlops.operators.base import DailyOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.contracts import PublishedFeatures


class PublishFeaturesOperator(DailyOperator):
    """Validated partition -> offline store; then materialise the day (plus overlap) into the online store.
    The outlet Asset event carries the day and its row count."""

    operator_extra_links = (FeatureViewLink(),)

    def run(self, context: Context) -> PublishedFeatures:
        from airflow_mlops.steps import features

        day = self.day(context)
        record = features.publish(self.feast.store(), self.storage, self.spec, day)
        self.lineage.inputs.append(self.in_lake(keys.raw_partition(self.spec, day)))
        self.lineage.outputs += [
            lake_dataset(record["offline_partition"], rows=record["rows"]),
            feature_view_dataset(self.feast.project, record["feature_view"]),
        ]
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = {"ds": day.isoformat(), "rows": record["rows"]}
        return record
