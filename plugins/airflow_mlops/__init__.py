"""Google's MLOps level 1 on Apache Airflow 3: pipeline specs in, continuous-training DAGs out.

Layers, lightest first: :mod:`spec` (the declarative pipeline spec), :mod:`steps` (pure ML steps,
no Airflow), :mod:`operators` (thin Airflow adapters), :mod:`factory` (DAGs from a spec).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("airflow-mlops")
except PackageNotFoundError:  # running from a source tree that was not pip-installed
    __version__ = "0+unknown"
