"""Airflow operators, one module per pipeline (features, training, monitoring) on a shared base; the
validation gate serves the first two. Each is a thin adapter around a step of :mod:`airflow_mlops.steps`.

Every operator can also be imported from this package (``from airflow_mlops.operators import
TrainModelOperator``), as before the split; the module is imported on first use only.
"""

from __future__ import annotations

import importlib
from typing import Any

MODULE_OF = {
    "ValidateDataOperator": "validation",
    "PublishFeaturesOperator": "features",
    "BuildTrainingSetOperator": "training",
    "TrainModelOperator": "training",
    "ChallengerGateOperator": "training",
    "InfraValidationOperator": "training",
    "PromoteModelOperator": "training",
    "ScoreBatchOperator": "monitoring",
    "DetectDriftOperator": "monitoring",
    "PerformanceReportOperator": "monitoring",
    "RetrainDecisionOperator": "monitoring",
    "TriggerRetrainingOperator": "monitoring",
}


def __getattr__(name: str) -> Any:
    if name not in MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{MODULE_OF[name]}"), name)
