"""Google's MLOps level 1 on Apache Airflow 3: pipeline specs in, continuous-training DAGs out.

Layers, lightest first: :mod:`spec`, :mod:`keys` and :mod:`contracts` (what a pipeline is, where its data
lives, what its tasks record), :mod:`steps` (pure ML steps, no Airflow), :mod:`hooks` (the endpoints),
:mod:`operators` and :mod:`sensors` (thin Airflow adapters), :mod:`factory` (DAGs from a spec), :mod:`ui`.
:mod:`dev` is the development stack around them and :mod:`ci` the checks and templates for a project's
CI; ``lint-imports`` keeps the layers.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("airflow-mlops")
except PackageNotFoundError:  # running from a source tree that was not pip-installed
    __version__ = "0+unknown"
