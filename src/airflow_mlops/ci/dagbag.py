"""Parse a DAG folder the way ``airflow dags report`` does, in this (fresh) interpreter, and print what
CI checks as one JSON line: per file its parse times and import error, per DAG its owner, tags and the
tasks without retries, and which ML libraries the parse imported.

The folder is parsed twice: the first parse also imports Airflow's and the libraries' modules (once
per process), the second times the DAG files' own top-level code, which the parse budget is about.

``python -m airflow_mlops.ci.dagbag DAGS_FOLDER``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HEAVY = ("mlflow", "great_expectations", "feast", "evidently", "torch", "sklearn")


def report(folder: str) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    cold = DagBag(dag_folder=folder)
    heavy = sorted(m for m in HEAVY if m in sys.modules)
    bag = DagBag(dag_folder=folder)
    first = {s.file: s.duration.total_seconds() * 1000 for s in cold.dagbag_stats}
    return {  # stats name files relative to the folder, import errors by their full path: all full here
        "files": {
            str(Path(folder, s.file)): [s.duration.total_seconds() * 1000, first.get(s.file)] for s in bag.dagbag_stats
        },
        "errors": {str(Path(folder, path)): str(error) for path, error in bag.import_errors.items()},
        "dags": {
            dag_id: {
                "file": dag.fileloc,
                "owner": dag.owner,
                "tags": sorted(dag.tags),
                "tasks": [t.task_id for t in dag.tasks],
                "no_retries": [t.task_id for t in dag.tasks if not t.retries],
            }
            for dag_id, dag in bag.dags.items()
        },
        "heavy": heavy,
    }


if __name__ == "__main__":
    print(json.dumps(report(sys.argv[1])))
