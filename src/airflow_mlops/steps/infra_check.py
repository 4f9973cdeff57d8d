"""Infra validation's child process: load a registered model as pyfunc, score the rows read from stdin
(as parquet, which keeps their dtypes) and print one JSON line. Run by
:func:`airflow_mlops.steps.registry.infra_validate` as
``python -m airflow_mlops.steps.infra_check MODEL_URI TRACKING_URI REGISTRY_URI DATA_SPEC_JSON``, in a fresh
interpreter,
as a scoring worker would load the model.

Exit status :data:`UNAVAILABLE` (``EX_TEMPFAIL``) means MLflow or the artifact store could not be reached
while downloading the model: an outage to retry, not a verdict on the model.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
from typing import Any

from airflow_mlops.spec import DataSpec
from airflow_mlops.task_types import pyfunc_scores, scores_problem

UNAVAILABLE = 75


def main(argv: list[str]) -> int:
    import mlflow

    model_uri, tracking_uri, registry_uri, data_json = argv
    data = DataSpec.model_validate_json(data_json)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri)
    with tempfile.TemporaryDirectory() as folder:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder)
        except Exception as exc:
            if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
                raise  # no such model: a verdict, not an outage
            print(f"cannot download {model_uri}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return UNAVAILABLE
        model = mlflow.pyfunc.load_model(local)
        return score(model, data)


def score(model: Any, data: DataSpec) -> int:
    import pandas as pd

    frame = pd.read_parquet(io.BytesIO(sys.stdin.buffer.read()))
    try:
        scores = pyfunc_scores(data, model.predict(frame))
    except ValueError as exc:  # an output of the wrong shape: a verdict on the model
        print(json.dumps({"rows": len(frame), "problem": str(exc)}))
        return 0
    problem = scores_problem(data, scores)
    print(json.dumps({"rows": len(frame), "problem": problem, "min": float(scores.min()), "max": float(scores.max())}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
